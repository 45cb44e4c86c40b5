"""Least privilege, cdk-nag and cfn-lint over the synthesized template."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import STACK_NAME, Resources, Synthesis, of_type

# Actions AWS only accepts with "Resource": "*", each with the reason.
STAR_RESOURCE_ALLOWED = {
    # X-Ray has no resource types (Lambda active tracing, state machine tracing).
    "xray:PutTraceSegments": "X-Ray: no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray: no resource-level permissions",
    "xray:GetSamplingRules": "X-Ray: no resource-level permissions",
    "xray:GetSamplingTargets": "X-Ray: no resource-level permissions",
    # Step Functions logging to CloudWatch Logs (vended logs delivery).
    "logs:CreateLogDelivery": "vended log delivery: no resource types",
    "logs:GetLogDelivery": "vended log delivery: no resource types",
    "logs:UpdateLogDelivery": "vended log delivery: no resource types",
    "logs:DeleteLogDelivery": "vended log delivery: no resource types",
    "logs:ListLogDeliveries": "vended log delivery: no resource types",
    "logs:PutResourcePolicy": "vended log delivery: account-level resource policy",
    "logs:DescribeResourcePolicies": "vended log delivery: account-level list",
    "logs:DescribeLogGroups": "vended log delivery: account-level list",
    # Image pulls: the ECR auth token is account-wide.
    "ecr:GetAuthorizationToken": "ECR: no resource types",
    # The ECS agent on each edge instance finds its endpoint before it registers.
    "ecs:DiscoverPollEndpoint": "ECS: no resource types",
    # Task-token callbacks: the token is the capability.
    "states:SendTaskSuccess": "Step Functions callbacks: no resource types",
    "states:SendTaskFailure": "Step Functions callbacks: no resource types",
    "states:SendTaskHeartbeat": "Step Functions callbacks: no resource types",
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(resources: Resources) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, policy in of_type(resources, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            yield key, statement
    for key, role in of_type(resources, "AWS::IAM::Role").items():
        for inline in role["Properties"].get("Policies", []):
            for statement in inline["PolicyDocument"]["Statement"]:
                yield key, statement


def test_no_wildcard_actions(resources: Resources) -> None:
    # Not even families such as s3:GetObject*: every action is named.
    for key, statement in _statements(resources):
        for action in _as_list(statement["Action"]):
            assert "*" not in action, (key, action)


def test_star_resource_only_where_aws_requires_it(resources: Resources) -> None:
    seen = 0
    for key, statement in _statements(resources):
        if "*" in _as_list(statement["Resource"]):
            seen += 1
            for action in _as_list(statement["Action"]):
                assert action in STAR_RESOURCE_ALLOWED, (key, action)
    assert seen  # the allow-list is exercised, not dead


def test_no_role_carries_a_managed_policy(resources: Resources) -> None:
    # AWS-managed policies (AmazonEC2ContainerServiceforEC2Role, ...) grant on "*".
    for key, role in of_type(resources, "AWS::IAM::Role").items():
        assert not role["Properties"].get("ManagedPolicyArns"), key


def test_no_allow_with_not_action_or_not_resource(resources: Resources) -> None:
    for key, statement in _statements(resources):
        assert "NotAction" not in statement and "NotResource" not in statement, key


# Every acknowledged rule was reviewed; a new one must be added here on purpose.
REVIEWED_ACKNOWLEDGMENTS = {
    "AwsSolutions-IAM5": "wildcards only inside our own resources or where AWS requires *",
    "AwsSolutions-SMG4": "secret rotation is an operator procedure (keyring keeps old kids)",
    "AwsSolutions-EC23": "the CDN NLB and each edge accept 443 from anyone",
    "AwsSolutions-ELB2": "NLB access logs exist only for TLS listeners; ours is TCP",
    "AwsSolutions-ECS2": "plain env holds non-secret settings; the join token is a secret",
    "AwsSolutions-SNS2": "alarm notifications hold no data; CloudWatch cannot use aws/sns",
    "AwsSolutions-AS3": "scaling history stays in the group; alarms go to the alarm topic",
}


def _nag_report(synthesis: Synthesis) -> dict[str, Any]:
    report = json.loads((synthesis.outdir / "validation-report.json").read_text())
    (plugin,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    return dict(plugin)


def test_cdk_nag_has_no_unacknowledged_findings(synthesis: Synthesis) -> None:
    assert synthesis.error is None, synthesis.error
    plugin = _nag_report(synthesis)
    violations = [
        f"{v['ruleName']} at {c['constructPath']}"
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    ]
    assert plugin["conclusion"] == "success" and not violations, "\n".join(violations)


def test_cdk_nag_acknowledgments_are_reviewed_and_reasoned(synthesis: Synthesis) -> None:
    suppressed = _nag_report(synthesis)["suppressedViolations"]
    assert suppressed
    for violation in suppressed:
        rule = violation["ruleName"].split("[", 1)[0]
        assert rule in REVIEWED_ACKNOWLEDGMENTS, violation["ruleName"]
        assert len(violation["reason"]) > 20, violation["ruleName"]


@pytest.mark.skipif(
    importlib.util.find_spec("cfnlint") is None,
    reason="cfn-lint is not installed in this environment (pip install cfn-lint)",
)
@pytest.mark.parametrize("variant", ["synthesis", "custom_synthesis"])
def test_cfn_lint_reports_no_errors(variant: str, request: pytest.FixtureRequest) -> None:
    # Both the defaults and every option on (TLS front door, DNS record, email).
    synthesis: Synthesis = request.getfixturevalue(variant)
    template = synthesis.outdir / f"{STACK_NAME}.template.json"
    # cfnlint has no __main__: `python -m cfnlint` would exit 1 without linting.
    result = subprocess.run(
        [sys.executable, "-c", _CFN_LINT, "--format", "json", "--", str(template)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    # Exit code bits: 2 errors, 4 warnings, 8 informational; anything else (1: the
    # linter itself failed) means nothing was checked.
    assert result.returncode in (0, 4, 8, 12), result.stderr[-2000:]
    findings = json.loads(result.stdout)
    errors = [
        f"{f['Rule']['Id']} {f['Message']} ({f['Location']['Path']})"
        for f in findings
        if f["Level"] == "Error"
    ]
    assert not errors, "\n".join(errors)


_CFN_LINT = "import sys; from cfnlint.runner import main; sys.exit(main())"
