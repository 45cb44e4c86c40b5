"""The edge fleet: one edge per EC2 instance, each reachable at its own public address.

Why not one load balancer name for all: placement (rendezvous hashing, then
distance) picks an edge per file so that its cache pays off, and the share
redirect and plans send the player to that edge's registered endpoint. Behind a
single name every redirect would land on whichever edge the load balancer picks.
So each instance has a public IPv4 address; the container's entrypoint
(``edge_node/discover_public_url.py``) reads the instance's public DNS name from
IMDSv2 and registers ``https://NAME:443``, and the CSR names exactly that host.

The Network Load Balancer stays as the fleet's front door for clients without a
placement (and for the health alarm): TCP passthrough on 443 by default, or,
given a public certificate (``domain_name``), a TLS listener that re-encrypts to
the edges. Passthrough cannot serve a verifiable name of its own: each edge's
certificate names only its own host (the control plane's CSR rule).

Each instance runs the edge as an ECS daemon task in host network mode, so the
edge sees players' addresses (IP-restricted shares) and IMDS answers with a hop
limit of 1. Port 443 on the instance is redirected to the edge's unprivileged
port; the cache lives on the instance's gp3 root volume, across task restarts.
No NAT: instances reach the API, S3 (gateway endpoint) and ECR directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.nag import acknowledge, resource_finding

CONTAINER_NAME = "edge"
# The edge's own (unprivileged) port; the NLB and the 443 redirect both land here.
TLS_PORT = 8443
# /healthz and /metrics (plain HTTP): the NLB's health checks and the container's, and
# scrapers in the VPC; players cannot reach it (FSNODE_EDGE_ADMIN_PORT).
ADMIN_PORT = 9090
# What players connect to: the NLB listener, and each instance's public address.
LISTENER_PORT = 443
PUBLIC_PORT = 443
STATE_DIR = "/var/lib/fsnode"
# The image's "edge" user (edge_node/Dockerfile); it owns the host's state folder.
EDGE_UID = 10001
# The root volume also holds the OS, the ECS agent and image layers.
SYSTEM_GIB = 30
ROOT_DEVICE = "/dev/xvda"
# The edge keeps a share of its filesystem free on its own; leave room for logs too.
_CACHE_SHARE = 0.9
# Docker-ignore allow-list: the image needs only what edge_node/Dockerfile COPYs.
# Everything else (.venv, cdk.out, ...) would be copied into cdk.out and hashed on
# every synth. tests/infra checks the Dockerfile's COPY sources against this list.
IMAGE_CONTEXT_INCLUDES = ["edge_node", "layers"]
_IMAGE_EXCLUDES = [
    "*",
    *(f"!{path}" for path in IMAGE_CONTEXT_INCLUDES),
    "**/__pycache__",
    "**/*.pyc",
]
_REDIRECT_RULE = f"PREROUTING -p tcp --dport {PUBLIC_PORT} -j REDIRECT --to-ports {TLS_PORT}"
# A unit, not a one-off command: user data runs once, nat rules vanish on reboot.
_REDIRECT_UNIT = f"""\
cat > /etc/systemd/system/fsnode-https-redirect.service <<'UNIT'
[Unit]
Description=fsnode: send HTTPS on {PUBLIC_PORT} to the edge's port {TLS_PORT}
After=network-online.target
Before=ecs.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'iptables -t nat -C {_REDIRECT_RULE} || iptables -t nat -A {_REDIRECT_RULE}'

[Install]
WantedBy=multi-user.target
UNIT"""


def _is_arm(instance_type: str) -> bool:
    return ec2.InstanceType(instance_type).architecture == ec2.InstanceArchitecture.ARM_64


def image_platform(instance_type: str) -> ecr_assets.Platform:
    """The container platform of an instance type: linux/arm64 on Graviton, else amd64."""
    return (
        ecr_assets.Platform.LINUX_ARM64
        if _is_arm(instance_type)
        else ecr_assets.Platform.LINUX_AMD64
    )


def network_bytes_per_minute(mbps: int) -> int:
    """A per-edge network target (megabits per second) as ASGAverageNetworkOut counts it."""
    return mbps * 1_000_000 // 8 * 60


class EdgeFleet(Construct):
    """VPC, ECS cluster, the edge Auto Scaling group and daemon service, and the NLB."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        build_context: Path,
        dockerfile: str,
        join_token: secretsmanager.ISecret,
        api_url: str,
        certificate: acm.ICertificate | None = None,
        min_count: int = 2,
        max_count: int = 10,
        instance_type: str = "c6i.large",
        cache_gib: int = 100,
        network_target_mbps: int = 400,
        log_level: str = "INFO",
        extra_environment: Mapping[str, str] | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        if not (build_context / dockerfile).is_file():
            raise FileNotFoundError(f"No Dockerfile at {build_context / dockerfile}")

        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC)
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                logs.LogGroup(
                    self,
                    "FlowLogs",
                    retention=log_retention,
                    removal_policy=RemovalPolicy.DESTROY,
                )
            ),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )

        self.instance_type = instance_type
        self.load_balancer_sg = self._load_balancer_security_group()
        self.edge_sg = self._edge_security_group()
        self.instance_role = self._instance_role()
        self.auto_scaling_group = self._auto_scaling_group(
            instance_type=instance_type,
            volume_gib=cache_gib + SYSTEM_GIB,
            min_count=min_count,
            max_count=max_count,
            network_target_mbps=network_target_mbps,
        )

        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        cache_bytes = int(cache_gib * 1024**3 * _CACHE_SHARE)
        self.task_definition, self.container = self._task(
            build_context=build_context,
            dockerfile=dockerfile,
            join_token=join_token,
            environment={
                "FSNODE_API_URL": api_url,
                "FSNODE_EDGE_HOST": "0.0.0.0",  # bind address on the instance
                "FSNODE_EDGE_PORT": str(TLS_PORT),
                "FSNODE_EDGE_ADMIN_PORT": str(ADMIN_PORT),
                # The entrypoint sets FSNODE_EDGE_PUBLIC_URL from instance metadata.
                "FSNODE_EDGE_PUBLIC_URL_SOURCE": "ec2-metadata",
                "FSNODE_EDGE_PUBLIC_PORT": str(PUBLIC_PORT),
                "FSNODE_STATE_DIR": STATE_DIR,
                "FSNODE_CACHE_MAX_BYTES": str(cache_bytes),
                "FSNODE_CAPACITY_BYTES": str(cache_bytes),
                "FSNODE_REGION": Stack.of(self).region,
                # boto3 signs S3 URLs for the bucket's region, not the global endpoint.
                "AWS_DEFAULT_REGION": Stack.of(self).region,
                "FSNODE_LOG_LEVEL": log_level,
                **(extra_environment or {}),
            },
        )
        self.task_role: iam.IRole = self.task_definition.task_role

        # One edge per instance: the instance's address is the edge's identity.
        self.service = ecs.Ec2Service(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            daemon=True,
            # A rolling deploy replaces half the edges at a time; the other half serves.
            min_healthy_percent=50,
            max_healthy_percent=100,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        )

        self.load_balancer = elbv2.NetworkLoadBalancer(
            self,
            "Nlb",
            vpc=self.vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[self.load_balancer_sg],
            cross_zone_enabled=True,
        )
        acknowledge(
            self.load_balancer,
            "AwsSolutions-ELB2",
            (
                "NLB access logs are written only for TLS listeners; without a domain the "
                "listener is TCP passthrough (the edge terminates TLS), so there is "
                "nothing to log. With a domain the front door carries only clients "
                "without a placement (redirects go to edges directly), so its logs are "
                "left off; edge metrics and VPC flow logs (rejects) remain."
            ),
        )
        protocol = elbv2.Protocol.TLS if certificate else elbv2.Protocol.TCP
        self.listener = self.load_balancer.add_listener(
            "Tls",
            port=LISTENER_PORT,
            protocol=protocol,
            certificates=(
                [elbv2.ListenerCertificate.from_certificate_manager(certificate)]
                if certificate
                else None
            ),
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS if certificate else None,
        )
        self.target_group = self.listener.add_targets(
            "Edges",
            port=TLS_PORT,
            # With a certificate the NLB re-encrypts to the edge (it does not check
            # the edge's private-CA certificate); without one, bytes pass through.
            protocol=protocol,
            targets=[self.auto_scaling_group],
            health_check=elbv2.HealthCheck(
                protocol=elbv2.Protocol.HTTP,
                port=str(ADMIN_PORT),
                path="/healthz",
                interval=Duration.seconds(10),
                healthy_threshold_count=2,
                unhealthy_threshold_count=2,
            ),
            # Long enough for a player to finish the range it is reading.
            deregistration_delay=Duration.seconds(30),
        )
        self.front_door_host: str = self.load_balancer.load_balancer_dns_name

    def _load_balancer_security_group(self) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            "LoadBalancerSg",
            vpc=self.vpc,
            description="fsnode edge NLB: HTTPS from anyone",
            allow_all_outbound=False,
        )
        group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(LISTENER_PORT), "HTTPS")
        acknowledge(
            group,
            "AwsSolutions-EC23",
            "A CDN front door must accept HTTPS from any client; only 443 is open.",
        )
        return group

    def _edge_security_group(self) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            "EdgeSg",
            vpc=self.vpc,
            description="fsnode edges: HTTPS from players and from the NLB",
            # The control plane's API, S3, ECR and ECS are public HTTPS endpoints.
            allow_all_outbound=True,
        )
        group.add_ingress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(PUBLIC_PORT), "HTTPS from players (to the edge)"
        )
        group.connections.allow_from(
            self.load_balancer_sg, ec2.Port.tcp(TLS_PORT), "NLB (front door)"
        )
        group.connections.allow_from(
            self.load_balancer_sg, ec2.Port.tcp(ADMIN_PORT), "NLB health checks"
        )
        self.load_balancer_sg.connections.allow_to(
            group, ec2.Port.tcp(TLS_PORT), "to the edges' TLS port"
        )
        self.load_balancer_sg.connections.allow_to(
            group, ec2.Port.tcp(ADMIN_PORT), "to the edges' health checks"
        )
        acknowledge(
            group,
            "AwsSolutions-EC23",
            (
                "Each edge serves players directly (placement redirects to it), so 443 is "
                "open to any client; the edge port and the health and metrics port are "
                "open only to the NLB."
            ),
        )
        return group

    def _instance_role(self) -> iam.Role:
        # What the ECS agent needs to join this cluster, and nothing else: image pulls,
        # logs and the join token go through the task execution role, the edge's S3
        # reads through the task role.
        role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="fsnode edge instances: the ECS agent only",
        )
        cluster_arn = self.cluster.cluster_arn
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ecs:RegisterContainerInstance",
                    "ecs:DeregisterContainerInstance",
                    "ecs:SubmitContainerStateChange",
                    "ecs:SubmitTaskStateChange",
                    "ecs:SubmitAttachmentStateChanges",
                ],
                resources=[cluster_arn],
            )
        )
        container_instances = Stack.of(self).format_arn(
            service="ecs",
            resource="container-instance",
            resource_name=f"{self.cluster.cluster_name}/*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecs:Poll", "ecs:StartTelemetrySession"],
                resources=[container_instances],
                conditions={"ArnEquals": {"ecs:cluster": cluster_arn}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["ecs:DiscoverPollEndpoint"], resources=["*"])
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            (
                "The ECS agent polls as whichever container instance it registered as "
                "(ids are assigned at registration), within this cluster only; "
                "ecs:DiscoverPollEndpoint supports no resource-level permission."
            ),
            ["Resource::*", resource_finding(self, container_instances)],
        )
        return role

    def _user_data(self) -> ec2.UserData:
        user_data = ec2.UserData.for_linux()
        user_data.add_commands(
            f"echo ECS_CLUSTER={self.cluster.cluster_name} >> /etc/ecs/ecs.config",
            # Logs go through the task execution role, not the instance's.
            "echo ECS_ENABLE_AWSLOGS_EXECUTIONROLE_OVERRIDE=true >> /etc/ecs/ecs.config",
            # The host-network edge gets its task role (S3 reads) from the agent.
            "echo ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true >> /etc/ecs/ecs.config",
            f"install -d -o {EDGE_UID} -m 0700 {STATE_DIR}",
            _REDIRECT_UNIT,
            "systemctl daemon-reload",
            "systemctl enable --now fsnode-https-redirect.service",
        )
        return user_data

    def _auto_scaling_group(
        self,
        *,
        instance_type: str,
        volume_gib: int,
        min_count: int,
        max_count: int,
        network_target_mbps: int,
    ) -> autoscaling.AutoScalingGroup:
        launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            machine_image=ecs.EcsOptimizedImage.amazon_linux2023(
                ecs.AmiHardwareType.ARM if _is_arm(instance_type) else ecs.AmiHardwareType.STANDARD
            ),
            instance_type=ec2.InstanceType(instance_type),
            role=self.instance_role,
            security_group=self.edge_sg,
            user_data=self._user_data(),
            associate_public_ip_address=True,
            # IMDSv2 only; hop limit 1 still reaches the host-network container.
            require_imdsv2=True,
            http_put_response_hop_limit=1,
            detailed_monitoring=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name=ROOT_DEVICE,
                    volume=ec2.BlockDeviceVolume.ebs(
                        volume_gib,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        encrypted=True,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        group = autoscaling.AutoScalingGroup(
            self,
            "Instances",
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            launch_template=launch_template,
            min_capacity=min_count,
            max_capacity=max_count,
            # An instance whose edge fails the NLB's health check is replaced; the
            # grace covers boot, image pull, registration and the first certificate.
            health_checks=autoscaling.HealthChecks.with_additional_checks(
                additional_types=[autoscaling.AdditionalHealthCheckType.ELB],
                grace_period=Duration.minutes(5),
            ),
            # Target tracking waits this long for a new instance's metrics (it ignores a
            # cooldown): boot, image pull, registration and a first certificate.
            default_instance_warmup=Duration.minutes(5),
            # A new launch template (image, user data) replaces one edge at a time.
            # CloudFormation needs MinInstancesInService below MaxSize.
            update_policy=autoscaling.UpdatePolicy.rolling_update(
                max_batch_size=1, min_instances_in_service=min_count - 1
            ),
        )
        acknowledge(
            group,
            "AwsSolutions-AS3",
            (
                "Scaling activity is recorded in the group's activity history; the alarms "
                "that matter to an operator (no healthy edges, dead nodes) notify the "
                "alarm topic instead of every launch and termination."
            ),
        )
        # Scale out on whichever saturates first; scale in only when both allow it.
        group.scale_on_cpu_utilization("Cpu", target_utilization_percent=60)
        # ASGAverageNetworkOut is bytes per metric period: one minute with the detailed
        # monitoring the instances have (CDK's target_bytes_per_second would be 60x low).
        autoscaling.TargetTrackingScalingPolicy(
            self,
            "NetworkOut",
            auto_scaling_group=group,
            predefined_metric=autoscaling.PredefinedMetric.ASG_AVERAGE_NETWORK_OUT,
            target_value=network_bytes_per_minute(network_target_mbps),
        )
        return group

    def _task(
        self,
        *,
        build_context: Path,
        dockerfile: str,
        join_token: secretsmanager.ISecret,
        environment: Mapping[str, str],
    ) -> tuple[ecs.Ec2TaskDefinition, ecs.ContainerDefinition]:
        task = ecs.Ec2TaskDefinition(
            self,
            "Task",
            network_mode=ecs.NetworkMode.HOST,
            volumes=[ecs.Volume(name="state", host=ecs.Host(source_path=STATE_DIR))],
        )
        container = task.add_container(
            CONTAINER_NAME,
            # Built for the instances' CPU, whatever machine runs the deploy.
            image=ecs.ContainerImage.from_asset(
                str(build_context),
                file=dockerfile,
                exclude=_IMAGE_EXCLUDES,
                platform=image_platform(self.instance_type),
            ),
            # Soft limit: the edge may use the instance's memory (its tiers are bounded).
            memory_reservation_mib=1024,
            port_mappings=[ecs.PortMapping(container_port=TLS_PORT, protocol=ecs.Protocol.TCP)],
            environment=dict(environment),
            secrets={"FSNODE_JOIN_TOKEN": ecs.Secret.from_secrets_manager(join_token)},
            logging=ecs.LogDrivers.aws_logs(stream_prefix="edge", log_group=self.log_group),
            # Liveness, on the admin port (players' port answers 404 there).
            health_check=ecs.HealthCheck(
                command=[
                    "CMD",
                    "python",
                    "-c",
                    "import urllib.request as r;"
                    f"r.urlopen('http://127.0.0.1:{ADMIN_PORT}/healthz',timeout=4)",
                ],
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(60),
            ),
            stop_timeout=Duration.seconds(30),
        )
        container.add_mount_points(
            ecs.MountPoint(source_volume="state", container_path=STATE_DIR, read_only=False)
        )
        acknowledge(
            task,
            "AwsSolutions-ECS2",
            (
                "The plain environment holds only non-secret settings (URLs, "
                "ports, sizes); the join token comes from Secrets Manager."
            ),
        )
        acknowledge(
            task.obtain_execution_role(),
            "AwsSolutions-IAM5",
            "Added by CDK for image pulls: ecr:GetAuthorizationToken supports no resource.",
            ["Resource::*"],
        )
        return task, container
