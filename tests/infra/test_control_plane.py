"""Control plane: the Chalice functions' settings, layer, role and grants."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from infra import paths
from infra.constructs.storage import TABLE_ACTIONS
from infra.settings import FsnodeSettings

from .conftest import Synthesis, of_type

# Every FSNODE_* setting the control plane reads (functions/chalicelib/settings.py),
# except the local stack's api-key switch: deployed, IAM guards the management routes.
CONTROL_PLANE_SETTINGS = paths.FUNCTIONS_DIR / "chalicelib" / "settings.py"
LOCAL_ONLY = {"FSNODE_API_KEY_SECRET"}
POWERTOOLS_ENV = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}


def _settings_read_by_functions() -> set[str]:
    return set(re.findall(r"FSNODE_[A-Z0-9_]+", CONTROL_PLANE_SETTINGS.read_text())) - LOCAL_ONLY


def _env(resources: dict, function: str = "APIHandler") -> dict[str, Any]:
    return dict(resources[function]["Properties"]["Environment"]["Variables"])


def _functions(resources: dict) -> dict[str, dict[str, Any]]:
    return of_type(resources, "AWS::Serverless::Function")


def _policy_statements(resources: dict, role_logical_id: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"].get("Roles", []))
        if role_logical_id in roles:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_every_function_has_settings_layer_and_tracing(
    resources: dict, synthesis: Synthesis
) -> None:
    functions = _functions(resources)
    assert {"APIHandler", "PlanReplication", "WarmChunk"} <= set(functions)
    (layer_id,) = of_type(resources, "AWS::Lambda::LayerVersion")
    required = POWERTOOLS_ENV | {"FSNODE_NODES_TABLE", "FSNODE_REPLICATE_STATE_MACHINE_ARN"}
    if not synthesis.uses_placeholder_functions:
        # Only the real app has both machines (gc.asl.json) and reads every setting.
        required |= _settings_read_by_functions()
    assert "FSNODE_GC_STATE_MACHINE_ARN" in required or synthesis.uses_placeholder_functions
    for name, function in functions.items():
        props = function["Properties"]
        assert set(props["Environment"]["Variables"]) >= required, name
        assert not set(props["Environment"]["Variables"]) & LOCAL_ONLY, name
        assert props["Layers"] == [{"Ref": layer_id}], name
        assert props["Tracing"] == "Active", name
        assert props["Runtime"] == "python3.11", name
        assert props["Role"] == {"Fn::GetAtt": ["DefaultRole", "Arn"]}, name


def test_settings_reach_the_functions_with_cdk_json_defaults(resources: dict) -> None:
    env = _env(resources)
    defaults = FsnodeSettings()
    for name, value in defaults.control_plane_environment().items():
        assert env[name] == value, name
    assert env["FSNODE_REPLICATION_STRATEGY"] == "async"
    assert env["FSNODE_PUBLIC_URL"] == ""  # unset: share URLs follow the request


def test_import_buckets_default_to_the_origin(resources: dict) -> None:
    (origin,) = (k for k in of_type(resources, "AWS::S3::Bucket") if k.startswith("StorageOrigin"))
    assert _env(resources)["FSNODE_IMPORT_BUCKETS"] == {"Ref": origin}
    assert _env(resources)["FSNODE_BUCKET"] == {"Ref": origin}


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


# The whole of what the functions may do beyond logs and X-Ray; a new grant must be
# added here on purpose.
CONTROL_PLANE_ACTIONS = {
    *TABLE_ACTIONS,
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
    "s3:DeleteObject",
    "s3:ListBucket",
    "acm-pca:IssueCertificate",
    "acm-pca:GetCertificate",
    "acm-pca:GetCertificateAuthorityCertificate",
    "secretsmanager:GetSecretValue",
    "secretsmanager:DescribeSecret",
    "states:StartExecution",
    "states:DescribeExecution",
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
}


def _by_action(resources: dict, role: str) -> dict[str, list[Any]]:
    by_action: dict[str, list[Any]] = {}
    for statement in _policy_statements(resources, role):
        actions = statement["Action"]
        for action in actions if isinstance(actions, list) else [actions]:
            by_action.setdefault(action, []).append(statement["Resource"])
    return by_action


def test_default_role_grants_exactly_what_the_functions_call(resources: dict) -> None:
    by_action = _by_action(resources, "DefaultRole")
    assert set(by_action) == CONTROL_PLANE_ACTIONS
    (ca_id,) = of_type(resources, "AWS::ACMPCA::CertificateAuthority")
    for action in (
        "acm-pca:IssueCertificate",
        "acm-pca:GetCertificate",
        "acm-pca:GetCertificateAuthorityCertificate",
    ):
        assert by_action[action] == [{"Fn::GetAtt": [ca_id, "Arn"]}], action
    for table in of_type(resources, "AWS::DynamoDB::Table"):
        assert table in json.dumps(by_action["dynamodb:PutItem"])
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:GetObjectVersion"):
        (objects,) = by_action[action]
        assert "StorageOrigin" in json.dumps(objects) and json.dumps(objects).endswith('"/*"]]}')
    (bucket,) = by_action["s3:ListBucket"]
    assert bucket["Fn::GetAtt"][0].startswith("StorageOrigin")
    secrets = json.dumps(by_action["secretsmanager:GetSecretValue"])
    for secret in of_type(resources, "AWS::SecretsManager::Secret"):
        assert secret in secrets
    machines = of_type(resources, "AWS::StepFunctions::StateMachine")
    assert by_action["states:StartExecution"] == [{"Ref": key} for key in machines]
    assert by_action["states:SendTaskSuccess"] == ["*"]
    assert by_action["states:SendTaskFailure"] == ["*"]


def test_describe_execution_only_on_our_machines_executions(resources: dict) -> None:
    # Synchronous replication waits on an execution; GC checks an earlier collection.
    (granted,) = _by_action(resources, "DefaultRole")["states:DescribeExecution"]
    arns = granted if isinstance(granted, list) else [granted]
    names = [
        machine["Properties"]["StateMachineName"]
        for machine in of_type(resources, "AWS::StepFunctions::StateMachine").values()
    ]
    assert sorted(json.dumps(arn).rsplit(":execution:", 1)[1] for arn in arns) == sorted(
        f'{name}:*"]]}}' for name in names
    )


def test_api_name_and_output(resources: dict, synthesis: Synthesis) -> None:
    assert resources["RestAPI"]["Properties"]["Name"] == "FsnodeStack-api"
    assert resources["RestAPI"]["Properties"]["EndpointConfiguration"] == "REGIONAL"
    outputs = synthesis.template["Outputs"]
    assert {
        "ApiUrl",
        "EdgeLoadBalancerDns",
        "EdgeFrontDoorUrl",
        "AlarmTopicArn",
        "CaArn",
        "BucketName",
    } <= set(outputs)
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
