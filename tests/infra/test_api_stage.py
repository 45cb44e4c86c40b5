"""The API stage: access logs, throttling, tracing and gateway responses (cdk-nag skips
SAM APIs, so these stand in for its API Gateway rules)."""

from __future__ import annotations

import json
from typing import Any

from infra import paths
from infra.constructs.api_stage import ACCESS_LOG_FORMAT
from infra.settings import FsnodeSettings

from .conftest import Resources, Synthesis, of_type


def _api(resources: dict[str, Any]) -> dict[str, Any]:
    return dict(resources["RestAPI"]["Properties"])


def test_the_stage_writes_access_logs_without_headers(resources: Resources) -> None:
    setting = _api(resources)["AccessLogSetting"]
    (group_id, _) = setting["DestinationArn"]["Fn::GetAtt"]
    group = resources[group_id]
    assert group["Type"] == "AWS::Logs::LogGroup" and group["Properties"]["RetentionInDays"]
    assert setting["Format"] == ACCESS_LOG_FORMAT
    fields = json.loads(setting["Format"])
    assert {"requestId", "ip", "status", "principal", "errorType"} <= set(fields)
    assert not any("header" in value.lower() for value in fields.values())
    # API Gateway writes the logs through the account's CloudWatch role.
    (account,) = of_type(resources, "AWS::ApiGateway::Account").values()
    (role_id, _) = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"]
    principal = resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert principal["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert not resources[role_id]["Properties"].get("ManagedPolicyArns")


def test_every_method_is_throttled_and_traced(resources: Resources) -> None:
    api = _api(resources)
    defaults = FsnodeSettings()
    assert api["MethodSettings"] == [
        {
            "ResourcePath": "/*",
            "HttpMethod": "*",
            "MetricsEnabled": True,
            "ThrottlingRateLimit": defaults.api_throttle_rate_limit,
            "ThrottlingBurstLimit": defaults.api_throttle_burst_limit,
        }
    ]
    assert api["TracingEnabled"] is True


def test_gateway_refusals_answer_in_the_error_shape(resources: Resources) -> None:
    table = json.loads((paths.FUNCTIONS_DIR / "gateway_responses.json").read_text())
    responses = _api(resources)["GatewayResponses"]
    assert (
        set(responses)
        == set(table)
        >= {"UNAUTHORIZED", "ACCESS_DENIED", "REQUEST_TOO_LARGE", "INTEGRATION_TIMEOUT"}
    )
    for kind, spec in table.items():
        body = json.loads(responses[kind]["ResponseTemplates"]["application/json"])
        assert responses[kind]["StatusCode"] == str(spec["status"])
        assert body == {"error": {"code": spec["code"], "message": spec["message"]}}


def test_throttling_comes_from_context(custom_synthesis: Synthesis) -> None:
    (setting,) = _api(custom_synthesis.template["Resources"])["MethodSettings"]
    assert (setting["ThrottlingRateLimit"], setting["ThrottlingBurstLimit"]) == (25.5, 60)
