"""The edge fleet: Fargate tasks behind a Network Load Balancer that passes TLS through.

Network layout: tasks run in private subnets. They need outbound HTTPS to the
public API Gateway endpoint of the control plane, which VPC interface endpoints
cannot give (a private-DNS execute-api endpoint breaks calls to public APIs), so
the private subnets route through NAT. Cache fills, the bulk of the traffic, go to
S3 through a free gateway endpoint and never pay NAT data processing. Clients
reach tasks only through the NLB.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.nag import acknowledge, objects_finding

CONTAINER_NAME = "edge"
TLS_PORT = 8443
LISTENER_PORT = 443
STATE_DIR = "/var/lib/fsnode"
# Leave headroom on the ephemeral disk for the image layers, keys and temp files.
_CACHE_SHARE = 0.8
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


class EdgeFleet(Construct):
    """VPC, ECS cluster, Fargate service and the public NLB (TCP 443 → task TLS port)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        build_context: Path,
        dockerfile: str,
        bucket: s3.IBucket,
        join_token: secretsmanager.ISecret,
        api_url: str,
        domain_name: str | None = None,
        desired_count: int = 2,
        max_count: int = 10,
        cpu: int = 1024,
        memory_mib: int = 2048,
        ephemeral_storage_gib: int = 100,
        nat_gateways: int = 1,
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
            nat_gateways=nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
                ec2.SubnetConfiguration(
                    name="tasks", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS
                ),
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

        self.load_balancer_sg = ec2.SecurityGroup(
            self,
            "LoadBalancerSg",
            vpc=self.vpc,
            description="fsnode edge NLB: HTTPS from anyone",
            allow_all_outbound=False,
        )
        self.load_balancer_sg.add_ingress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(LISTENER_PORT), "HTTPS from players"
        )
        acknowledge(
            self.load_balancer_sg,
            "AwsSolutions-EC23",
            "A CDN edge must accept HTTPS from any client; only 443 is open.",
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
                "NLB access logs are written only for TLS listeners; this listener "
                "is TCP passthrough (the edge terminates TLS), so there is nothing "
                "to log. VPC flow logs cover rejected traffic."
            ),
        )
        public_host = domain_name or self.load_balancer.load_balancer_dns_name

        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=cpu,
            memory_limit_mib=memory_mib,
            ephemeral_storage_gib=ephemeral_storage_gib,
        )
        self.task_role: iam.IRole = self.task_definition.task_role
        # Edges only read origin objects; they never list, write or delete.
        self.task_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects("*")])
        )
        acknowledge(
            self.task_role,
            "AwsSolutions-IAM5",
            "Edges read whichever origin object a signed share URL names: any key.",
            [objects_finding(bucket)],
        )
        cache_bytes = int(ephemeral_storage_gib * 1024**3 * _CACHE_SHARE)
        self.container = self.task_definition.add_container(
            CONTAINER_NAME,
            image=ecs.ContainerImage.from_asset(
                str(build_context), file=dockerfile, exclude=_IMAGE_EXCLUDES
            ),
            port_mappings=[ecs.PortMapping(container_port=TLS_PORT, protocol=ecs.Protocol.TCP)],
            environment={
                "FSNODE_API_URL": api_url,
                "FSNODE_EDGE_HOST": "0.0.0.0",  # bind address inside the task
                "FSNODE_EDGE_PORT": str(TLS_PORT),
                "FSNODE_EDGE_PUBLIC_URL": f"https://{public_host}",
                "FSNODE_STATE_DIR": STATE_DIR,
                "FSNODE_CACHE_MAX_BYTES": str(cache_bytes),
                "FSNODE_CAPACITY_BYTES": str(cache_bytes),
                "FSNODE_REGION": Stack.of(self).region,
                "FSNODE_LOG_LEVEL": log_level,
                **(extra_environment or {}),
            },
            secrets={"FSNODE_JOIN_TOKEN": ecs.Secret.from_secrets_manager(join_token)},
            logging=ecs.LogDrivers.aws_logs(stream_prefix="edge", log_group=self.log_group),
            # Liveness only: the certificate names the public host, not 127.0.0.1.
            health_check=ecs.HealthCheck(
                command=[
                    "CMD",
                    "python",
                    "-c",
                    "import ssl,urllib.request as r;"
                    f"r.urlopen('https://127.0.0.1:{TLS_PORT}/healthz',"
                    "context=ssl._create_unverified_context(),timeout=4)",
                ],
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(60),
            ),
            stop_timeout=Duration.seconds(30),
        )
        acknowledge(
            self.task_definition,
            "AwsSolutions-ECS2",
            (
                "The plain environment holds only non-secret settings (URLs, "
                "ports, sizes); the join token comes from Secrets Manager."
            ),
        )

        acknowledge(
            self.task_definition.obtain_execution_role(),
            "AwsSolutions-IAM5",
            "Added by CDK for image pulls: ecr:GetAuthorizationToken supports no resource.",
            ["Resource::*"],
        )

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            desired_count=desired_count,
            assign_public_ip=False,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            # Nodes fetch their certificate before they pass health checks.
            health_check_grace_period=Duration.seconds(120),
        )
        self.service.connections.allow_from(
            self.load_balancer_sg, ec2.Port.tcp(TLS_PORT), "NLB to edge TLS port"
        )
        self.load_balancer_sg.add_egress_rule(
            ec2.Peer.ipv4(self.vpc.vpc_cidr_block), ec2.Port.tcp(TLS_PORT), "to edge tasks"
        )

        self.listener = self.load_balancer.add_listener(
            "Tls", port=LISTENER_PORT, protocol=elbv2.Protocol.TCP
        )
        self.target_group = self.listener.add_targets(
            "Edges",
            port=TLS_PORT,
            protocol=elbv2.Protocol.TCP,
            targets=[
                self.service.load_balancer_target(
                    container_name=CONTAINER_NAME, container_port=TLS_PORT
                )
            ],
            health_check=elbv2.HealthCheck(
                protocol=elbv2.Protocol.HTTPS,
                path="/healthz",
                interval=Duration.seconds(10),
                healthy_threshold_count=2,
                unhealthy_threshold_count=2,
            ),
            # Long enough for a player to finish the range it is reading.
            deregistration_delay=Duration.seconds(30),
        )

        scaling = self.service.auto_scale_task_count(
            min_capacity=desired_count, max_capacity=max_count
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=60,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )
