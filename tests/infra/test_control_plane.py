"""Control plane: the Chalice functions' settings, layer, role and grants."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fsnode_core.control_plane_settings import ControlPlaneOptions, env_name

from infra import paths
from infra.constructs.control_plane import require_lambda_python
from infra.constructs.core_layer import LAMBDA_PYTHON, LAMBDA_RUNTIME
from infra.settings import FsnodeSettings

from .conftest import Resources, Synthesis, of_type

# Every FSNODE_* setting the control plane reads: the shared schema's tunables and the
# resource names functions/chalicelib/settings.py adds. The functions the API handler
# invokes are named to it alone (the others would reference themselves).
CONTROL_PLANE_SETTINGS = paths.FUNCTIONS_DIR / "chalicelib" / "settings.py"
API_HANDLER_ONLY = {
    "FSNODE_ISSUE_CERTIFICATE_FUNCTION",
    "FSNODE_REPORT_WORK_FUNCTION",
    "FSNODE_EDGE_ROLE_ARN",
    "FSNODE_REFRESH_PUBLIC_CERTIFICATE_FUNCTION",
}
POWERTOOLS_ENV = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}


def _settings_read_by_functions() -> set[str]:
    tunables = {env_name(field.name) for field in dataclasses.fields(ControlPlaneOptions)}
    return tunables | set(re.findall(r"FSNODE_[A-Z0-9_]+", CONTROL_PLANE_SETTINGS.read_text()))


def _env(resources: Resources, function: str = "APIHandler") -> dict[str, Any]:
    return dict(resources[function]["Properties"]["Environment"]["Variables"])


def _functions(resources: Resources) -> dict[str, dict[str, Any]]:
    return of_type(resources, "AWS::Serverless::Function")


def test_every_function_has_settings_layer_and_tracing(
    resources: Resources, synthesis: Synthesis
) -> None:
    functions = _functions(resources)
    assert {"APIHandler", "PlanReplication", "WarmChunk"} <= set(functions)
    (layer_id,) = of_type(resources, "AWS::Lambda::LayerVersion")
    required = POWERTOOLS_ENV | {"FSNODE_NODES_TABLE", "FSNODE_REPLICATE_STATE_MACHINE_ARN"}
    if not synthesis.uses_placeholder_functions:
        # Only the real app has both machines (gc.asl.json) and reads every setting.
        required |= _settings_read_by_functions()
    assert "FSNODE_GC_STATE_MACHINE_ARN" in required or synthesis.uses_placeholder_functions
    layer_runtimes = resources[layer_id]["Properties"]["CompatibleRuntimes"]
    roles = set()
    for name, function in functions.items():
        props = function["Properties"]
        variables = set(props["Environment"]["Variables"])
        assert variables >= required - API_HANDLER_ONLY, name
        assert (variables >= API_HANDLER_ONLY) == (
            name == "APIHandler"
        ) or synthesis.uses_placeholder_functions, name
        assert props["Layers"] == [{"Ref": layer_id}], name
        assert props["Tracing"] == "Active", name
        # Pinned to the layer's runtime, whatever interpreter ran synth.
        assert props["Runtime"] == LAMBDA_RUNTIME.name and layer_runtimes == [props["Runtime"]]
        # A role of its own: no two functions share one, none keeps Chalice's placeholder.
        (role_id, attribute) = props["Role"]["Fn::GetAtt"]
        assert attribute == "Arn" and resources[role_id]["Type"] == "AWS::IAM::Role", name
        roles.add(role_id)
    assert len(roles) == len(functions)
    assert "DefaultRole" not in resources


def test_settings_reach_the_functions_with_cdk_json_defaults(resources: Resources) -> None:
    env = _env(resources)
    defaults = FsnodeSettings()
    for name, value in defaults.control_plane_environment().items():
        assert env[name] == value, name
    assert env["FSNODE_REPLICATION_STRATEGY"] == "async"
    assert env["FSNODE_PUBLIC_URL"] == ""  # unset: share URLs follow the request


def test_registrations_must_be_signed_as_the_edge_task_role(resources: Resources) -> None:
    """The API handler (register) knows the edge task role; its ARN is the role's."""
    (role_id, attribute) = _env(resources)["FSNODE_EDGE_ROLE_ARN"]["Fn::GetAtt"]
    assert attribute == "Arn" and resources[role_id]["Type"] == "AWS::IAM::Role"
    assert role_id.startswith("EdgeFleetTask"), role_id
    assert (
        _env(resources)["FSNODE_NODE_NAMESPACE"]
        == ".compute.amazonaws.com,.compute-1.amazonaws.com"
    )
    # The regional STS endpoint of the stack's own region and partition.
    assert _env(resources)["FSNODE_STS_ENDPOINT"] == {
        "Fn::Join": ["", ["https://sts.", {"Ref": "AWS::Region"}, ".", {"Ref": "AWS::URLSuffix"}]]
    }


def test_import_buckets_default_to_the_origin(resources: Resources) -> None:
    (origin,) = (k for k in of_type(resources, "AWS::S3::Bucket") if k.startswith("StorageOrigin"))
    assert _env(resources)["FSNODE_IMPORT_BUCKETS"] == {"Ref": origin}
    assert _env(resources)["FSNODE_BUCKET"] == {"Ref": origin}


def test_state_machine_arn_setting_is_not_a_ref(resources: Resources) -> None:
    # A Ref would be a cycle: the machine invokes these very functions.
    env = resources["PlanReplication"]["Properties"]["Environment"]["Variables"]
    arn = json.dumps(env["FSNODE_REPLICATE_STATE_MACHINE_ARN"])
    assert "stateMachine:FsnodeStack-replicate" in arn
    assert '"Ref": "Workflows' not in arn


def test_prune_runs_every_minute(resources: Resources) -> None:
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


def test_each_function_role_holds_only_logs_and_traces_inline(resources: Resources) -> None:
    for name, function in _functions(resources).items():
        role = resources[function["Properties"]["Role"]["Fn::GetAtt"][0]]["Properties"]
        assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
            "Service": "lambda.amazonaws.com"
        }, name
        assert not role.get("ManagedPolicyArns"), name
        (policy,) = role["Policies"]
        statements = policy["PolicyDocument"]["Statement"]
        actions = sorted(a for s in statements for a in s["Action"])
        assert actions == [
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "xray:PutTelemetryRecords",
            "xray:PutTraceSegments",
        ], name
        logs_resource = json.dumps(statements[0]["Resource"])
        assert "log-group:/aws/lambda/*" in logs_resource and "arn:*:logs:*" not in logs_resource


def test_api_name_and_output(resources: Resources, synthesis: Synthesis) -> None:
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
        "AdminKeySecretArn",
    } <= set(outputs)
    assert "execute-api" in json.dumps(outputs["ApiUrl"]["Value"])


def test_each_function_has_a_log_group_with_retention(resources: Resources) -> None:
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


def test_synthesis_refuses_another_python_than_the_lambda_runtime() -> None:
    require_lambda_python(LAMBDA_PYTHON)
    with pytest.raises(RuntimeError, match=r"Synthesize with Python 3\.11, not 3\.12"):
        require_lambda_python((3, 12, 1))
