"""Edge fleet: Fargate behind an NLB that passes TLS through on 443."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk.assertions import Match, Template

from infra import paths
from infra.constructs.edge_fleet import IMAGE_CONTEXT_INCLUDES, LISTENER_PORT, TLS_PORT

from .conftest import of_type

# docs/PROTOCOL.md, Settings, edge (FSNODE_JOIN_TOKEN comes as a secret).
EDGE_ENV = {
    "FSNODE_API_URL",
    "FSNODE_EDGE_HOST",
    "FSNODE_EDGE_PORT",
    "FSNODE_STATE_DIR",
    "FSNODE_CACHE_MAX_BYTES",
    "FSNODE_REGION",
    "FSNODE_CAPACITY_BYTES",
}


def _container(resources: dict) -> dict[str, Any]:
    (task,) = of_type(resources, "AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    return dict(container)


def test_vpc_spans_two_azs_with_private_task_subnets(template: Template, resources: dict) -> None:
    template.resource_count_is("AWS::EC2::VPC", 1)
    subnets = of_type(resources, "AWS::EC2::Subnet").values()
    public = [s for s in subnets if s["Properties"].get("MapPublicIpOnLaunch")]
    assert len(public) == 2 and len(subnets) == 4
    template.has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway", "ServiceName": Match.any_value()}
    )


def test_task_has_ephemeral_cache_disk_and_fargate_sizes(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "RequiresCompatibilities": ["FARGATE"],
            "Cpu": "1024",
            "Memory": "2048",
            "EphemeralStorage": {"SizeInGiB": 100},
        },
    )


def test_container_settings_secret_health_check_and_logs(resources: dict) -> None:
    container = _container(resources)
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert set(env) >= EDGE_ENV
    assert env["FSNODE_EDGE_PORT"] == str(TLS_PORT) and env["FSNODE_EDGE_HOST"] == "0.0.0.0"
    assert "execute-api" in json.dumps(env["FSNODE_API_URL"])
    assert [s["Name"] for s in container["Secrets"]] == ["FSNODE_JOIN_TOKEN"]
    assert "FSNODE_JOIN_TOKEN" not in env
    assert "/healthz" in " ".join(container["HealthCheck"]["Command"])
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["PortMappings"] == [{"ContainerPort": TLS_PORT, "Protocol": "tcp"}]


def test_service_runs_private_behind_nlb(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ECS::Service",
        {
            "LaunchType": "FARGATE",
            "DesiredCount": 2,
            "NetworkConfiguration": {
                "AwsvpcConfiguration": Match.object_like({"AssignPublicIp": "DISABLED"})
            },
            "LoadBalancers": [
                Match.object_like({"ContainerName": "edge", "ContainerPort": TLS_PORT})
            ],
        },
    )


def test_nlb_listener_is_tcp_443_passthrough(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        {"Type": "network", "Scheme": "internet-facing"},
    )
    # TCP, not TLS: the edge terminates TLS with its CA-signed certificate.
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {"Port": LISTENER_PORT, "Protocol": "TCP", "Certificates": Match.absent()},
    )
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            "Port": TLS_PORT,
            "Protocol": "TCP",
            "TargetType": "ip",
            "HealthCheckProtocol": "HTTPS",
            "HealthCheckPath": "/healthz",
        },
    )


def test_cpu_auto_scaling(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget", {"MinCapacity": 2, "MaxCapacity": 10}
    )
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
                    }
                }
            ),
        },
    )


def test_task_role_only_reads_origin_objects(resources: dict) -> None:
    (task,) = of_type(resources, "AWS::ECS::TaskDefinition").values()
    role_id = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in of_type(resources, "AWS::IAM::Policy").values()
        if role_id in json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert len(statements) == 1
    assert statements[0]["Action"] == "s3:GetObject"
    assert "StorageOrigin" in json.dumps(statements[0]["Resource"])


def test_image_context_holds_what_the_dockerfile_copies() -> None:
    # The asset copies only IMAGE_CONTEXT_INCLUDES; a COPY of anything else would
    # fail at `cdk deploy`, long after synth.
    dockerfile = (paths.REPO_ROOT / paths.EDGE_DOCKERFILE).read_text()
    sources = [
        source
        for line in dockerfile.splitlines()
        if re.match(r"^\s*(COPY|ADD)\s", line) and "--from=" not in line
        for source in line.split()[1:-1]
        if not source.startswith("--")
    ]
    assert sources
    for source in sources:
        assert source.split("/")[0] in IMAGE_CONTEXT_INCLUDES, source
