"""Step Functions state machines from ``functions/statemachines/*.asl.json``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.nag import acknowledge, resource_finding

_SUFFIX = ".asl.json"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_FUNCTION_ARN = re.compile(r"^([A-Za-z0-9]+)FunctionArn$")
_DISTRIBUTED = '"Mode": "DISTRIBUTED"'


def discover_definitions(definitions_dir: Path) -> dict[str, Path]:
    """Map each state machine's name (``replicate``) to its ASL file."""
    return {
        path.name[: -len(_SUFFIX)]: path for path in sorted(definitions_dir.glob(f"*{_SUFFIX}"))
    }


def state_machine_name(scope: Construct, name: str) -> str:
    """The physical name: fixed, so the control plane can know the ARN up front."""
    return f"{Stack.of(scope).stack_name}-{name}"


def state_machine_arn(scope: Construct, name: str) -> str:
    """The ARN built from the name, not a Ref.

    The functions that a machine invokes also start machines; a Ref in their
    environment would make a dependency cycle (function → machine → function).
    """
    return Stack.of(scope).format_arn(
        service="states",
        resource="stateMachine",
        resource_name=state_machine_name(scope, name),
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


class Workflows(Construct):
    """One state machine per ASL file, logging ALL (without execution data) to a log
    group, with X-Ray on.

    ``${XxxFunctionArn}`` placeholders are filled from ``function_arn("Xxx")``;
    any other placeholder must be in ``substitutions``. One role serves every
    machine and may invoke exactly the functions the definitions name.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        definitions_dir: Path,
        function_arn: Callable[[str], str],
        substitutions: Mapping[str, str] | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        definitions = discover_definitions(definitions_dir)
        if not definitions:
            raise FileNotFoundError(f"No *{_SUFFIX} state machines in {definitions_dir}")
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            # The vended-logs prefix keeps the log group's resource policy small.
            log_group_name=f"/aws/vendedlogs/states/{Stack.of(self).stack_name}",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("states.amazonaws.com"))
        self.state_machines: dict[str, sfn.StateMachine] = {}
        self.invoked_function_arns: list[str] = []
        for name, path in definitions.items():
            machine_substitutions = self._substitutions(
                path, function_arn, dict(substitutions or {})
            )
            machine = sfn.StateMachine(
                self,
                _construct_id(name),
                state_machine_name=state_machine_name(self, name),
                definition_body=sfn.DefinitionBody.from_file(str(path)),
                definition_substitutions=machine_substitutions,
                role=self.role,
                tracing_enabled=True,
                # Every state transition is logged, but not its data: inputs and outputs
                # carry task tokens (the capability to complete a step).
                logs=sfn.LogOptions(
                    destination=self.log_group,
                    level=sfn.LogLevel.ALL,
                    include_execution_data=False,
                ),
            )
            self.state_machines[name] = machine
            if _DISTRIBUTED in path.read_text(encoding="utf-8"):
                # A Distributed Map runs each item as a child execution of its own machine.
                self.role.add_to_principal_policy(
                    iam.PolicyStatement(
                        actions=["states:StartExecution"], resources=[state_machine_arn(self, name)]
                    )
                )
                children = Stack.of(self).format_arn(
                    service="states",
                    resource="execution",
                    resource_name=f"{state_machine_name(self, name)}/*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
                self.role.add_to_principal_policy(
                    iam.PolicyStatement(
                        actions=["states:DescribeExecution", "states:StopExecution"],
                        resources=[children],
                    )
                )
                acknowledge(
                    self.role,
                    "AwsSolutions-IAM5",
                    "A Distributed Map's child executions get names only at run time; the "
                    "wildcard stays inside this one state machine's executions.",
                    [resource_finding(self, children)],
                )

        if self.invoked_function_arns:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"], resources=self.invoked_function_arns
                )
            )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            (
                "Added by CDK for state machine logging and tracing: the "
                "CloudWatch Logs delivery actions and X-Ray trace writes support "
                "no resource-level permissions."
            ),
            ["Resource::*"],
        )

    def _substitutions(
        self, path: Path, function_arn: Callable[[str], str], known: dict[str, str]
    ) -> dict[str, str]:
        result: dict[str, str] = {}
        for placeholder in sorted(set(_PLACEHOLDER.findall(path.read_text(encoding="utf-8")))):
            match = _FUNCTION_ARN.match(placeholder)
            if match:
                arn = function_arn(match.group(1))
                result[placeholder] = arn
                if arn not in self.invoked_function_arns:
                    self.invoked_function_arns.append(arn)
            elif placeholder in known:
                result[placeholder] = known[placeholder]
            else:
                raise KeyError(
                    f"{path.name}: no value for ${{{placeholder}}}; known: "
                    f"*FunctionArn and {sorted(known)}"
                )
        return result

    def execution_arns(self, name: str) -> str:
        """Every execution of machine ``name``: the execution name is chosen at run time."""
        return Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{state_machine_name(self, name)}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )


def _construct_id(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)
