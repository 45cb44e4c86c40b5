"""Workflows: state machines from the ASL files, with their ARNs substituted."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk.assertions import Match, Template

from .conftest import Resources, Synthesis, of_type


def _machines(resources: Resources) -> Resources:
    return of_type(resources, "AWS::StepFunctions::StateMachine")


def test_replicate_machine_substitutes_chalice_function_arns(resources: Resources) -> None:
    (machine,) = [
        m
        for m in _machines(resources).values()
        if m["Properties"]["StateMachineName"] == "FsnodeStack-replicate"
    ]
    subs = machine["Properties"]["DefinitionSubstitutions"]
    assert subs["PlanReplicationFunctionArn"] == {"Fn::GetAtt": ["PlanReplication", "Arn"]}
    assert subs["WarmChunkFunctionArn"] == {"Fn::GetAtt": ["WarmChunk", "Arn"]}


def test_every_placeholder_in_every_definition_is_substituted(
    synthesis: Synthesis, resources: Resources
) -> None:
    for machine in _machines(resources).values():
        props = machine["Properties"]
        key = props["DefinitionS3Location"]["Key"]
        definition = (synthesis.outdir / f"asset.{key.removesuffix('.json')}.json").read_text()
        placeholders = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", definition))
        assert placeholders and placeholders == set(props["DefinitionSubstitutions"])


def test_logging_all_without_execution_data_and_tracing(template: Template) -> None:
    # Every transition is logged; inputs and outputs are not: they carry task tokens,
    # each the capability to complete a waiting step.
    template.all_resources_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "LoggingConfiguration": {
                "Level": "ALL",
                "IncludeExecutionData": False,
                "Destinations": [
                    {
                        "CloudWatchLogsLogGroup": {
                            "LogGroupArn": {
                                "Fn::GetAtt": [Match.string_like_regexp("^WorkflowsLogs"), "Arn"]
                            }
                        }
                    }
                ],
            },
            "TracingConfiguration": {"Enabled": True},
        },
    )


def test_role_invokes_exactly_the_substituted_functions(resources: Resources) -> None:
    role_ids = {m["Properties"]["RoleArn"]["Fn::GetAtt"][0] for m in _machines(resources).values()}
    (role_id,) = role_ids
    invoked: list[Any] = []
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        if role_id in json.dumps(policy["Properties"]["Roles"]):
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                if "lambda:InvokeFunction" in json.dumps(statement["Action"]):
                    assert statement["Action"] == "lambda:InvokeFunction"
                    invoked += (
                        statement["Resource"]
                        if isinstance(statement["Resource"], list)
                        else [statement["Resource"]]
                    )
    expected = [
        sub
        for m in _machines(resources).values()
        for name, sub in m["Properties"]["DefinitionSubstitutions"].items()
        if name.endswith("FunctionArn")
    ]
    assert sorted(map(json.dumps, invoked)) == sorted(set(map(json.dumps, expected)))


def test_a_distributed_map_may_run_its_machines_child_executions(resources: Resources) -> None:
    # replicate runs each batch as a child execution of itself (a Distributed Map): the
    # role starts executions of that machine only, and describes and stops its children.
    machines = _machines(resources).values()
    (role_id,) = {m["Properties"]["RoleArn"]["Fn::GetAtt"][0] for m in machines}
    statements = [
        statement
        for policy in of_type(resources, "AWS::IAM::Policy").values()
        if role_id in json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "states:" in json.dumps(statement["Action"])
    ]
    start = [s for s in statements if s["Action"] == "states:StartExecution"]
    assert len(start) == 1 and "FsnodeStack-replicate" in json.dumps(start[0]["Resource"])
    (children,) = [s for s in statements if "states:StopExecution" in s["Action"]]
    assert sorted(children["Action"]) == ["states:DescribeExecution", "states:StopExecution"]
    assert ":execution:FsnodeStack-replicate/*" in json.dumps(children["Resource"])
