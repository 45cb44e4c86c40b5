"""The edge's ECS task: its image (built from ``edge_node/Dockerfile``), the container
with its settings, join-token secret, logs and health check, and the state volume.

The task runs in host network mode, so the edge sees players' addresses
(IP-restricted shares) and IMDS answers with a hop limit of 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.constructs.edge_instances import STATE_DIR, is_arm
from infra.constructs.edge_network import ADMIN_PORT, TLS_PORT
from infra.nag import acknowledge

CONTAINER_NAME = "edge"
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


def image_platform(instance_type: str) -> ecr_assets.Platform:
    """The container platform of an instance type: linux/arm64 on Graviton, else amd64."""
    return (
        ecr_assets.Platform.LINUX_ARM64
        if is_arm(instance_type)
        else ecr_assets.Platform.LINUX_AMD64
    )


def edge_task(
    scope: Construct,
    *,
    build_context: Path,
    dockerfile: str,
    instance_type: str,
    join_token: secretsmanager.ISecret,
    environment: Mapping[str, str],
    log_group: logs.ILogGroup,
) -> tuple[ecs.Ec2TaskDefinition, ecs.ContainerDefinition]:
    """The edge's task definition and container, built in ``scope`` (the fleet: its
    logical IDs stay)."""
    task = ecs.Ec2TaskDefinition(
        scope,
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
            platform=image_platform(instance_type),
        ),
        # Soft limit: the edge may use the instance's memory (its tiers are bounded).
        memory_reservation_mib=1024,
        port_mappings=[ecs.PortMapping(container_port=TLS_PORT, protocol=ecs.Protocol.TCP)],
        environment=dict(environment),
        secrets={"FSNODE_JOIN_TOKEN": ecs.Secret.from_secrets_manager(join_token)},
        logging=ecs.LogDrivers.aws_logs(stream_prefix="edge", log_group=log_group),
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
