"""Control plane: the Chalice functions' settings, layer, role and grants."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from infra import paths

from .conftest import Synthesis, of_type

# docs/PROTOCOL.md, Settings, control plane (FSNODE_API_KEY_SECRET is local only,
# FSNODE_PUBLIC_URL optional; the GC machine's ARN only once gc.asl.json exists).
REQUIRED_ENV = {
    "FSNODE_NODES_TABLE",
    "FSNODE_CHUNKS_TABLE",
    "FSNODE_IDEMPOTENCY_TABLE",
    "FSNODE_BUCKET",
    "FSNODE_CA_ARN",
    "FSNODE_JOIN_TOKEN_SECRET",
    "FSNODE_SIGNING_KEY_SECRET",
    "FSNODE_CHUNK_SIZE",
    "FSNODE_CERT_VALIDITY_DAYS",
    "FSNODE_HEARTBEAT_INTERVAL",
    "FSNODE_HEARTBEAT_TIMEOUT",
    "FSNODE_REPLICATION_FACTOR",
    "FSNODE_REPLICATE_STATE_MACHINE_ARN",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
}


def _functions(resources: dict) -> dict[str, dict[str, Any]]:
    return of_type(resources, "AWS::Serverless::Function")


def _policy_statements(resources: dict, role_logical_id: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"].get("Roles", []))
        if role_logical_id in roles:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_every_function_has_settings_layer_and_tracing(resources: dict) -> None:
    functions = _functions(resources)
    assert {"APIHandler", "PlanReplication", "WarmChunk"} <= set(functions)
    (layer_id,) = of_type(resources, "AWS::Lambda::LayerVersion")
    for name, function in functions.items():
        props = function["Properties"]
        assert set(props["Environment"]["Variables"]) >= REQUIRED_ENV, name
        assert props["Layers"] == [{"Ref": layer_id}], name
        assert props["Tracing"] == "Active", name
        assert props["Runtime"] == "python3.11", name
        assert props["Role"] == {"Fn::GetAtt": ["DefaultRole", "Arn"]}, name


def test_state_machine_arn_setting_is_not_a_ref(resources: dict) -> None:
    # A Ref would be a cycle: the machine invokes these very functions.
    env = resources["PlanReplication"]["Properties"]["Environment"]["Variables"]
    arn = json.dumps(env["FSNODE_REPLICATE_STATE_MACHINE_ARN"])
    assert "stateMachine:FsnodeStack-replicate" in arn
    assert '"Ref": "Workflows' not in arn


def test_prune_runs_every_minute(resources: dict) -> None:
    scheduled = [
        event["Properties"]["Schedule"]
        for function in _functions(resources).values()
        for event in function["Properties"].get("Events", {}).values()
        if event["Type"] == "Schedule"
    ]
    rules = [
        rule["Properties"]["ScheduleExpression"]
        for rule in of_type(resources, "AWS::Events::Rule").values()
    ]
    assert (scheduled + rules).count("rate(1 minute)") == 1, (
        "no prune schedule: functions/app.py defines neither @app.schedule('rate(1 minute)') "
        "nor @app.lambda_function(name='prune') (which the stack would schedule)"
    )


def test_default_role_inline_policy_is_logs_and_xray_only(resources: dict) -> None:
    (policy,) = resources["DefaultRole"]["Properties"]["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    actions = sorted(a for s in statements for a in s["Action"])
    assert actions == [
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTelemetryRecords",
        "xray:PutTraceSegments",
    ]
    logs_resource = json.dumps(statements[0]["Resource"])
    assert "log-group:/aws/lambda/*" in logs_resource and "arn:*:logs:*" not in logs_resource


def test_default_role_grants(resources: dict) -> None:
    statements = _policy_statements(resources, "DefaultRole")
    by_action: dict[str, list[Any]] = {}
    for statement in statements:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        for action in actions:
            by_action.setdefault(action, []).append(statement["Resource"])
    (ca_id,) = of_type(resources, "AWS::ACMPCA::CertificateAuthority")
    for action in (
        "acm-pca:IssueCertificate",
        "acm-pca:GetCertificate",
        "acm-pca:GetCertificateAuthorityCertificate",
    ):
        assert by_action[action] == [{"Fn::GetAtt": [ca_id, "Arn"]}], action
    for table in of_type(resources, "AWS::DynamoDB::Table"):
        assert table in json.dumps(by_action["dynamodb:PutItem"])
    assert "StorageOrigin" in json.dumps(by_action["s3:PutObject"])
    assert "StorageOrigin" in json.dumps(by_action["s3:DeleteObject*"])
    secrets = json.dumps(by_action["secretsmanager:GetSecretValue"])
    for secret in of_type(resources, "AWS::SecretsManager::Secret"):
        assert secret in secrets
    machines = of_type(resources, "AWS::StepFunctions::StateMachine")
    assert by_action["states:StartExecution"] == [{"Ref": key} for key in machines]
    assert by_action["states:SendTaskSuccess"] == ["*"]
    assert by_action["states:SendTaskFailure"] == ["*"]


def test_api_name_and_output(resources: dict, synthesis: Synthesis) -> None:
    assert resources["RestAPI"]["Properties"]["Name"] == "FsnodeStack-api"
    assert resources["RestAPI"]["Properties"]["EndpointConfiguration"] == "REGIONAL"
    outputs = synthesis.template["Outputs"]
    assert {"ApiUrl", "EdgeLoadBalancerDns", "CaArn", "BucketName"} <= set(outputs)
    assert "execute-api" in json.dumps(outputs["ApiUrl"]["Value"])


def test_each_function_has_a_log_group_with_retention(resources: dict) -> None:
    groups = [
        json.dumps(g["Properties"].get("LogGroupName"))
        for g in of_type(resources, "AWS::Logs::LogGroup").values()
        if g["Properties"].get("RetentionInDays")
    ]
    for name in _functions(resources):
        assert any(f'"Ref": "{name}"' in g and "/aws/lambda/" in g for g in groups), name


def _layer_dir(synthesis: Synthesis) -> Path:
    resources = synthesis.template["Resources"]
    (layer,) = of_type(resources, "AWS::Lambda::LayerVersion").values()
    key = layer["Properties"]["Content"]["S3Key"]
    return synthesis.outdir / f"asset.{key.removesuffix('.zip')}"


def test_layer_holds_core_library_and_pinned_packages(synthesis: Synthesis) -> None:
    python = _layer_dir(synthesis) / "python"
    assert (python / "fsnode_core" / "tables.json").is_file()
    assert (python / "fsnode_core" / "__init__.py").is_file()
    for package in ("aws_lambda_powertools", "cryptography", "aws_xray_sdk"):
        assert (python / package).is_dir(), package
    # The runtime's boto3/botocore must not be shadowed by a copy in the layer.
    assert not (python / "botocore").exists() and not (python / "boto3").exists()
    # Built for Lambda (manylinux x86_64, CPython 3.11 ABI), not for this machine.
    rust = [p.name for p in (python / "cryptography" / "hazmat" / "bindings").glob("_rust*.so")]
    assert rust and all(re.search(r"abi3|cpython-311-x86_64", name) for name in rust), rust


def test_layer_build_is_cached_outside_cdk_out() -> None:
    assert any(paths.CACHE_DIR.glob("layer-*/python/fsnode_core"))
