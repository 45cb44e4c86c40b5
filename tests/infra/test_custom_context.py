"""Every context setting off its default, every option on: what reaches the template."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra.constructs.edge_instances import SYSTEM_GIB
from infra.constructs.edge_network import LISTENER_PORT, TLS_PORT

from .conftest import CUSTOM_CONTEXT, Synthesis, of_type

ZONE = CUSTOM_CONTEXT["hosted_zone_id"]


@pytest.fixture(scope="module")
def custom(custom_synthesis: Synthesis) -> dict[str, Any]:
    return dict(custom_synthesis.template["Resources"])


def _env(custom: dict[str, Any]) -> dict[str, Any]:
    return dict(custom["APIHandler"]["Properties"]["Environment"]["Variables"])


def test_this_variant_is_nag_clean_too(custom_synthesis: Synthesis) -> None:
    assert custom_synthesis.error is None, custom_synthesis.error
    report = json.loads((custom_synthesis.outdir / "validation-report.json").read_text())
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert plugin["conclusion"] == "success", plugin["violations"]


def test_control_plane_settings_come_from_context(custom: dict[str, Any]) -> None:
    for function in of_type(custom, "AWS::Serverless::Function").values():
        env = function["Properties"]["Environment"]["Variables"]
        assert env["FSNODE_CHUNK_SIZE"] == "8388608"
        assert env["FSNODE_REPLICATION_FACTOR"] == "3"
        assert env["FSNODE_REPLICATION_STRATEGY"] == "sync"
        assert env["FSNODE_REPLICATION_FIRST_CHUNKS"] == "6"
        assert env["FSNODE_REPLICATION_MAX_MOVES"] == "5"
        assert env["FSNODE_REPLICATION_SYNC_TIMEOUT"] == "20.5"
        assert env["FSNODE_HOT_REPLICATION_WINDOW"] == "120"
        assert env["FSNODE_WARM_TIMEOUT"] == "400"
        assert env["FSNODE_EVICT_TIMEOUT"] == "200"
        assert env["FSNODE_GC_RETRY_WAIT"] == "30"
        assert env["FSNODE_GC_MAX_WAIT"] == "1800"
        assert env["FSNODE_HEARTBEAT_INTERVAL"] == "10"
        assert env["FSNODE_HEARTBEAT_TIMEOUT"] == "45"
        assert env["FSNODE_CERT_VALIDITY_DAYS"] == "7"
        assert env["FSNODE_PUBLIC_URL"] == "https://share.example.com"
        assert env["LOG_LEVEL"] == "DEBUG"


def test_import_buckets_reach_the_setting_and_both_roles(custom: dict[str, Any]) -> None:
    (origin,) = (k for k in of_type(custom, "AWS::S3::Bucket") if k.startswith("StorageOrigin"))
    delimiter, parts = _env(custom)["FSNODE_IMPORT_BUCKETS"]["Fn::Join"]
    rendered = delimiter.join(p if isinstance(p, str) else f"<{p['Ref']}>" for p in parts)
    assert rendered == f"<{origin}>,media-archive,media-partner"
    granted: dict[str, set[str]] = {}
    for policy in of_type(custom, "AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            resource = json.dumps(statement["Resource"])
            if "media-archive" in resource:
                actions = statement["Action"]
                granted.setdefault(roles, set()).update(
                    actions if isinstance(actions, list) else [actions]
                )
    by_role = {("APIHandler" in roles): actions for roles, actions in granted.items()}
    # The API handler heads and presigns the objects; edges only GET them. Nobody writes
    # (tests/infra/test_grants.py checks every role against infra/grants.json).
    assert by_role == {
        True: {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"},
        False: {"s3:GetObject", "s3:GetObjectVersion"},
    }


def test_edge_fleet_size_and_disk_come_from_context(custom: dict[str, Any]) -> None:
    (launch,) = of_type(custom, "AWS::EC2::LaunchTemplate").values()
    data = launch["Properties"]["LaunchTemplateData"]
    assert data["InstanceType"] == "m6i.large"
    assert data["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 200 + SYSTEM_GIB
    (group,) = of_type(custom, "AWS::AutoScaling::AutoScalingGroup").values()
    assert (group["Properties"]["MinSize"], group["Properties"]["MaxSize"]) == ("3", "6")
    network = [
        policy["Properties"]["TargetTrackingConfiguration"]
        for policy in of_type(custom, "AWS::AutoScaling::ScalingPolicy").values()
        if "NetworkOut"
        in policy["Properties"]["TargetTrackingConfiguration"]["PredefinedMetricSpecification"][
            "PredefinedMetricType"
        ]
    ]
    # 800 Mbit/s per edge, as the bytes per minute ASGAverageNetworkOut measures.
    assert [config["TargetValue"] for config in network] == [800_000_000 // 8 * 60]
    (task,) = of_type(custom, "AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["FSNODE_LOG_LEVEL"] == "DEBUG"
    assert 0.8 * 200 * 1024**3 < int(env["FSNODE_CACHE_MAX_BYTES"]) < 200 * 1024**3


def test_domain_gets_certificate_tls_front_door_record_and_output(
    custom_synthesis: Synthesis,
) -> None:
    template = Template.from_json(custom_synthesis.template)
    # The front door's (the edges' wildcard is tests/infra/test_public_names.py's).
    (certificate_id,) = [
        logical_id
        for logical_id, certificate in template.find_resources(
            "AWS::CertificateManager::Certificate"
        ).items()
        if certificate["Properties"]["DomainName"] == "cdn.example.com"
    ]
    template.has_resource_properties(
        "AWS::CertificateManager::Certificate",
        {
            "DomainName": "cdn.example.com",
            "DomainValidationOptions": [{"DomainName": "cdn.example.com", "HostedZoneId": ZONE}],
        },
    )
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {
            "Port": LISTENER_PORT,
            "Protocol": "TLS",
            "Certificates": [{"CertificateArn": {"Ref": certificate_id}}],
        },
    )
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup", {"Port": TLS_PORT, "Protocol": "TLS"}
    )
    template.has_resource_properties(
        "AWS::Route53::RecordSet",
        {"Name": "cdn.example.com.", "Type": "A", "HostedZoneId": ZONE},
    )
    outputs = custom_synthesis.template["Outputs"]
    assert outputs["EdgeFrontDoorUrl"]["Value"] == "https://cdn.example.com"


def test_alarm_email_is_subscribed(custom_synthesis: Synthesis) -> None:
    Template.from_json(custom_synthesis.template).has_resource_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "email", "Endpoint": "ops@example.com", "TopicArn": Match.any_value()},
    )
