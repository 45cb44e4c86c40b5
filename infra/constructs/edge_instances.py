"""The edge fleet's instances: their role (the ECS agent only), user data, launch
template, Auto Scaling group and scaling policies.

Each instance has a public IPv4 address (the edge's identity, see ``edge_fleet``).
Port 443 on the instance is redirected to the edge's unprivileged port; the cache
lives on the instance's gp3 root volume, across task restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.constructs.edge_network import PUBLIC_PORT, TLS_PORT, EdgeNetwork
from infra.nag import acknowledge, resource_finding

STATE_DIR = "/var/lib/fsnode"
# The image's "edge" user (edge_node/Dockerfile); it owns the host's state folder.
EDGE_UID = 10001
# The root volume also holds the OS, the ECS agent and image layers.
SYSTEM_GIB = 30
ROOT_DEVICE = "/dev/xvda"
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


def is_arm(instance_type: str) -> bool:
    """Whether an instance type is Graviton (arm64)."""
    return ec2.InstanceType(instance_type).architecture == ec2.InstanceArchitecture.ARM_64


def network_bytes_per_minute(mbps: int) -> int:
    """A per-edge network target (megabits per second) as ASGAverageNetworkOut counts it."""
    return mbps * 1_000_000 // 8 * 60


@dataclass(frozen=True, slots=True)
class EdgeInstances:
    role: iam.Role
    auto_scaling_group: autoscaling.AutoScalingGroup


def edge_instances(
    scope: Construct,
    *,
    network: EdgeNetwork,
    instance_type: str,
    cache_gib: int,
    min_count: int,
    max_count: int,
    network_target_mbps: int,
) -> EdgeInstances:
    """The fleet's instances, built in ``scope`` (the fleet: its logical IDs stay)."""
    role = _instance_role(scope, network.cluster)
    launch_template = ec2.LaunchTemplate(
        scope,
        "LaunchTemplate",
        machine_image=ecs.EcsOptimizedImage.amazon_linux2023(
            ecs.AmiHardwareType.ARM if is_arm(instance_type) else ecs.AmiHardwareType.STANDARD
        ),
        instance_type=ec2.InstanceType(instance_type),
        role=role,
        security_group=network.edge_sg,
        user_data=_user_data(network.cluster),
        associate_public_ip_address=True,
        # IMDSv2 only; hop limit 1 still reaches the host-network container.
        require_imdsv2=True,
        http_put_response_hop_limit=1,
        detailed_monitoring=True,
        block_devices=[
            ec2.BlockDevice(
                device_name=ROOT_DEVICE,
                volume=ec2.BlockDeviceVolume.ebs(
                    cache_gib + SYSTEM_GIB,
                    volume_type=ec2.EbsDeviceVolumeType.GP3,
                    encrypted=True,
                    delete_on_termination=True,
                ),
            )
        ],
    )
    group = autoscaling.AutoScalingGroup(
        scope,
        "Instances",
        vpc=network.vpc,
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
        scope,
        "NetworkOut",
        auto_scaling_group=group,
        predefined_metric=autoscaling.PredefinedMetric.ASG_AVERAGE_NETWORK_OUT,
        target_value=network_bytes_per_minute(network_target_mbps),
    )
    return EdgeInstances(role, group)


def _instance_role(scope: Construct, cluster: ecs.Cluster) -> iam.Role:
    # What the ECS agent needs to join this cluster, and nothing else: image pulls,
    # logs and the join token go through the task execution role, the edge's S3
    # reads through the task role.
    role = iam.Role(
        scope,
        "InstanceRole",
        assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
        description="fsnode edge instances: the ECS agent only",
    )
    cluster_arn = cluster.cluster_arn
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
    container_instances = Stack.of(scope).format_arn(
        service="ecs",
        resource="container-instance",
        resource_name=f"{cluster.cluster_name}/*",
        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["ecs:Poll", "ecs:StartTelemetrySession"],
            resources=[container_instances],
            conditions={"ArnEquals": {"ecs:cluster": cluster_arn}},
        )
    )
    role.add_to_policy(iam.PolicyStatement(actions=["ecs:DiscoverPollEndpoint"], resources=["*"]))
    acknowledge(
        role,
        "AwsSolutions-IAM5",
        (
            "The ECS agent polls as whichever container instance it registered as "
            "(ids are assigned at registration), within this cluster only; "
            "ecs:DiscoverPollEndpoint supports no resource-level permission."
        ),
        ["Resource::*", resource_finding(scope, container_instances)],
    )
    return role


def _user_data(cluster: ecs.Cluster) -> ec2.UserData:
    user_data = ec2.UserData.for_linux()
    user_data.add_commands(
        f"echo ECS_CLUSTER={cluster.cluster_name} >> /etc/ecs/ecs.config",
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
