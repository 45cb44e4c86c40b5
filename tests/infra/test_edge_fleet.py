"""Edge fleet: one edge per EC2 instance at its own public address, an NLB front door."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk.assertions import Match, Template
from aws_cdk.aws_ecr_assets import Platform

from edge_node import discover_public_url
from infra import paths
from infra.constructs.edge_instances import (
    EDGE_UID,
    STATE_DIR,
    SYSTEM_GIB,
    network_bytes_per_minute,
)
from infra.constructs.edge_network import ADMIN_PORT, LISTENER_PORT, PUBLIC_PORT, TLS_PORT
from infra.constructs.edge_task import IMAGE_CONTEXT_INCLUDES, image_platform

from .conftest import STACK_NAME, Resources, Synthesis, of_type

# docs/PROTOCOL.md, Settings, edge (FSNODE_JOIN_TOKEN comes as a secret).
EDGE_ENV = {
    "FSNODE_API_URL",
    "FSNODE_EDGE_HOST",
    "FSNODE_EDGE_PORT",
    "FSNODE_EDGE_ADMIN_PORT",
    "FSNODE_STATE_DIR",
    "FSNODE_CACHE_MAX_BYTES",
    "FSNODE_REGION",
    "FSNODE_CAPACITY_BYTES",
}
DOCKERFILE = (paths.REPO_ROOT / paths.EDGE_DOCKERFILE).read_text()


def _container(resources: Resources) -> dict[str, Any]:
    (task,) = of_type(resources, "AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    return dict(container)


def _launch_data(resources: Resources) -> dict[str, Any]:
    (template,) = of_type(resources, "AWS::EC2::LaunchTemplate").values()
    return dict(template["Properties"]["LaunchTemplateData"])


def _user_data(resources: Resources) -> str:
    parts = _launch_data(resources)["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(part if isinstance(part, str) else json.dumps(part) for part in parts)


def _role_statements(resources: Resources, role_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in of_type(resources, "AWS::IAM::Policy").values()
        if role_id in json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_vpc_has_public_subnets_only_and_no_nat(template: Template, resources: Resources) -> None:
    template.resource_count_is("AWS::EC2::VPC", 1)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    # Instances get public DNS names (what each edge registers).
    template.has_resource_properties(
        "AWS::EC2::VPC", {"EnableDnsHostnames": True, "EnableDnsSupport": True}
    )
    subnets = of_type(resources, "AWS::EC2::Subnet").values()
    assert len(subnets) == 2 and all(s["Properties"]["MapPublicIpOnLaunch"] for s in subnets)
    template.has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway", "ServiceName": Match.any_value()}
    )


def test_instances_have_public_addresses_imdsv2_and_an_encrypted_cache_volume(
    resources: Resources,
) -> None:
    data = _launch_data(resources)
    (interface,) = data["NetworkInterfaces"]
    assert interface["AssociatePublicIpAddress"] is True
    # IMDSv2 only; the host-network container is one hop away.
    assert data["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 1}
    assert data["Monitoring"] == {"Enabled": True}
    assert data["InstanceType"] == "c6i.large"
    (root,) = data["BlockDeviceMappings"]
    assert root["Ebs"] == {
        "DeleteOnTermination": True,
        "Encrypted": True,
        "VolumeSize": 100 + SYSTEM_GIB,
        "VolumeType": "gp3",
    }
    # The ECS-optimized image, resolved at deploy time (no lookup at synth).
    assert "ecsoptimizedamiamazonlinux2023" in json.dumps(data["ImageId"])


def test_user_data_joins_the_cluster_and_prepares_the_host(resources: Resources) -> None:
    script = _user_data(resources)
    (cluster_id,) = of_type(resources, "AWS::ECS::Cluster")
    assert f'echo ECS_CLUSTER={{"Ref": "{cluster_id}"}} >> /etc/ecs/ecs.config' in script
    assert "ECS_ENABLE_AWSLOGS_EXECUTIONROLE_OVERRIDE=true" in script
    assert "ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true" in script
    # Players reach each edge on 443; the edge (not root) listens on its own port.
    rule = f"PREROUTING -p tcp --dport {PUBLIC_PORT} -j REDIRECT --to-ports {TLS_PORT}"
    assert f"iptables -t nat -C {rule} || iptables -t nat -A {rule}" in script
    assert "systemctl enable --now fsnode-https-redirect.service" in script
    # The state folder belongs to the image's user.
    assert f"install -d -o {EDGE_UID} -m 0700 {STATE_DIR}" in script
    assert re.search(rf"useradd [^\n]*--uid {EDGE_UID}\b", DOCKERFILE)


def test_auto_scaling_group_spans_public_subnets_and_is_replaced_when_unhealthy(
    template: Template, resources: Resources
) -> None:
    template.resource_count_is("AWS::AutoScaling::LaunchConfiguration", 0)
    (group,) = of_type(resources, "AWS::AutoScaling::AutoScalingGroup").values()
    props = group["Properties"]
    assert (props["MinSize"], props["MaxSize"]) == ("2", "10")
    assert "DesiredCapacity" not in props  # a deploy must not undo scaling
    assert props["HealthCheckType"] == "ELB"
    public = {
        key
        for key, subnet in of_type(resources, "AWS::EC2::Subnet").items()
        if subnet["Properties"]["MapPublicIpOnLaunch"]
    }
    assert {ref["Ref"] for ref in props["VPCZoneIdentifier"]} == public
    (target_group,) = of_type(resources, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert props["TargetGroupARNs"] == [{"Ref": target_group}]
    rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["MaxBatchSize"] == 1 and rolling["MinInstancesInService"] < 10


def test_scaling_on_cpu_and_network(template: Template, resources: Resources) -> None:
    # ASGAverageNetworkOut is bytes per minute (detailed monitoring): 400 Mbit/s per edge.
    network = 400_000_000 // 8 * 60
    for metric, target in (("ASGAverageCPUUtilization", 60), ("ASGAverageNetworkOut", network)):
        template.has_resource_properties(
            "AWS::AutoScaling::ScalingPolicy",
            {
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingConfiguration": {
                    "PredefinedMetricSpecification": {"PredefinedMetricType": metric},
                    "TargetValue": target,
                },
            },
        )
    # Target tracking ignores a policy's cooldown: the group's warmup is what it honours.
    for policy in of_type(resources, "AWS::AutoScaling::ScalingPolicy").values():
        assert "Cooldown" not in policy["Properties"]
    (group,) = of_type(resources, "AWS::AutoScaling::AutoScalingGroup").values()
    assert group["Properties"]["DefaultInstanceWarmup"] == 300
    data = next(iter(of_type(resources, "AWS::EC2::LaunchTemplate").values()))
    assert data["Properties"]["LaunchTemplateData"]["Monitoring"] == {"Enabled": True}


def test_the_edge_image_is_built_for_the_instances_platform(synthesis: Synthesis) -> None:
    assets = json.loads((synthesis.outdir / f"{STACK_NAME}.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    assert image["source"]["platform"] == "linux/amd64"  # c6i: x86_64
    assert image_platform("c6i.large").platform == Platform.LINUX_AMD64.platform
    assert image_platform("c7g.large").platform == Platform.LINUX_ARM64.platform
    assert network_bytes_per_minute(8) == 60_000_000


def test_edge_runs_as_a_daemon_in_host_network_mode(
    template: Template, resources: Resources
) -> None:
    template.has_resource_properties(
        "AWS::ECS::Service",
        {
            "LaunchType": "EC2",
            "SchedulingStrategy": "DAEMON",
            "DeploymentConfiguration": Match.object_like(
                {"DeploymentCircuitBreaker": {"Enable": True, "Rollback": True}}
            ),
        },
    )
    (task,) = of_type(resources, "AWS::ECS::TaskDefinition").values()
    props = task["Properties"]
    assert props["NetworkMode"] == "host"
    assert props["RequiresCompatibilities"] == ["EC2"]
    assert props["Volumes"] == [{"Host": {"SourcePath": STATE_DIR}, "Name": "state"}]
    container = _container(resources)
    assert container["MountPoints"] == [
        {"ContainerPath": STATE_DIR, "ReadOnly": False, "SourceVolume": "state"}
    ]


def test_container_discovers_its_public_url_and_keeps_secrets_secret(resources: Resources) -> None:
    container = _container(resources)
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert set(env) >= EDGE_ENV
    assert env["FSNODE_EDGE_PORT"] == str(TLS_PORT) and env["FSNODE_EDGE_HOST"] == "0.0.0.0"
    # Each edge registers its own address, learned at start; none is fixed here.
    assert "FSNODE_EDGE_PUBLIC_URL" not in env
    assert env[discover_public_url.SOURCE_VARIABLE] == discover_public_url.EC2_METADATA
    assert env["FSNODE_EDGE_PUBLIC_PORT"] == str(PUBLIC_PORT)
    assert env["FSNODE_STATE_DIR"] == STATE_DIR
    assert int(env["FSNODE_CACHE_MAX_BYTES"]) < 100 * 1024**3
    assert "execute-api" in json.dumps(env["FSNODE_API_URL"])
    assert [s["Name"] for s in container["Secrets"]] == ["FSNODE_JOIN_TOKEN"]
    assert "FSNODE_JOIN_TOKEN" not in env
    assert f"http://127.0.0.1:{ADMIN_PORT}/healthz" in " ".join(container["HealthCheck"]["Command"])
    assert env["FSNODE_EDGE_ADMIN_PORT"] == str(ADMIN_PORT)
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    # Host network mode: the container port is the instance's port.
    assert container["PortMappings"] == [{"ContainerPort": TLS_PORT, "Protocol": "tcp"}]


def test_image_entrypoint_discovers_then_runs_the_edge() -> None:
    (entrypoint,) = re.findall(r"^ENTRYPOINT (.+)$", DOCKERFILE, flags=re.MULTILINE)
    assert json.loads(entrypoint) == ["python", "-m", "edge_node.discover_public_url"]


def test_nlb_listener_is_tcp_443_passthrough_to_instances(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        {"Type": "network", "Scheme": "internet-facing"},
    )
    # TCP, not TLS: without a public certificate the edge terminates TLS itself.
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {"Port": LISTENER_PORT, "Protocol": "TCP", "Certificates": Match.absent()},
    )
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            "Port": TLS_PORT,
            "Protocol": "TCP",
            "TargetType": "instance",
            # Health and metrics are on their own port, not the one players reach.
            "HealthCheckProtocol": "HTTP",
            "HealthCheckPort": str(ADMIN_PORT),
            "HealthCheckPath": "/healthz",
        },
    )


def test_security_groups_open_443_to_players_and_the_edge_port_to_the_nlb_only(
    resources: Resources,
) -> None:
    groups = of_type(resources, "AWS::EC2::SecurityGroup")
    (edge_id,) = (k for k in groups if k.startswith("EdgeFleetEdgeSg"))
    (nlb_id,) = (k for k in groups if k.startswith("EdgeFleetLoadBalancerSg"))
    edge_ingress = groups[edge_id]["Properties"]["SecurityGroupIngress"]
    assert [(r["CidrIp"], r["FromPort"], r["ToPort"]) for r in edge_ingress] == [
        ("0.0.0.0/0", PUBLIC_PORT, PUBLIC_PORT)
    ]
    extra = [
        r["Properties"]
        for r in of_type(resources, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [edge_id, "GroupId"]}
    ]
    # /healthz and /metrics: only the load balancer reaches them, never the internet.
    assert [(r["SourceSecurityGroupId"], r["FromPort"]) for r in extra] == [
        ({"Fn::GetAtt": [nlb_id, "GroupId"]}, TLS_PORT),
        ({"Fn::GetAtt": [nlb_id, "GroupId"]}, ADMIN_PORT),
    ]
    nlb_ingress = groups[nlb_id]["Properties"]["SecurityGroupIngress"]
    assert [(r["CidrIp"], r["FromPort"]) for r in nlb_ingress] == [("0.0.0.0/0", LISTENER_PORT)]


def test_task_role_only_gets_origin_objects(resources: Resources) -> None:
    (task,) = of_type(resources, "AWS::ECS::TaskDefinition").values()
    role_id = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statement, published, tree = _role_statements(resources, role_id)
    # A versioned import is read at the version its manifest pins.
    assert statement["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert "StorageOrigin" in json.dumps(statement["Resource"])
    # The published manifests and heads, and the tree listing: reads only.
    assert published["Action"] == "s3:GetObject"
    assert "/meta/v1/*" in json.dumps(published["Resource"])
    assert tree["Action"] == "s3:ListBucket"
    assert tree["Condition"] == {"StringLike": {"s3:prefix": ["meta/v1/tree/*"]}}


def test_instance_role_is_the_ecs_agent_in_this_cluster_only(resources: Resources) -> None:
    (profile,) = of_type(resources, "AWS::IAM::InstanceProfile").values()
    (role,) = profile["Properties"]["Roles"]
    statements = _role_statements(resources, role["Ref"])
    (cluster_id,) = of_type(resources, "AWS::ECS::Cluster")
    actions = {
        action
        for statement in statements
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }
    # Image pulls and logs use the task execution role; S3 the task role.
    assert actions == {
        "ecs:RegisterContainerInstance",
        "ecs:DeregisterContainerInstance",
        "ecs:SubmitContainerStateChange",
        "ecs:SubmitTaskStateChange",
        "ecs:SubmitAttachmentStateChanges",
        "ecs:Poll",
        "ecs:StartTelemetrySession",
        "ecs:DiscoverPollEndpoint",
    }
    for statement in statements:
        if statement["Resource"] != "*":
            assert cluster_id in json.dumps(statement), statement
    assert not of_type(resources, "AWS::IAM::Role")[role["Ref"]]["Properties"].get(
        "ManagedPolicyArns"
    )


def test_image_context_holds_what_the_dockerfile_copies() -> None:
    # The asset copies only IMAGE_CONTEXT_INCLUDES; a COPY of anything else would
    # fail at `cdk deploy`, long after synth.
    sources = [
        source
        for line in DOCKERFILE.splitlines()
        if re.match(r"^\s*(COPY|ADD)\s", line) and "--from=" not in line
        for source in line.split()[1:-1]
        if not source.startswith("--")
    ]
    assert sources
    for source in sources:
        assert source.split("/")[0] in IMAGE_CONTEXT_INCLUDES, source
