"""The local stack's Lambda functions, state machines and IAM roles.

Each component gets its own role with the grants of ``infra/grants.json`` (as CDK
gives it in AWS). The functions Step Functions runs and the ones the API handler
invokes are moto Lambda functions whose handlers run in-process (``lambda_dispatch``)
as their role; the API handler, the authorizer and prune run in the API server
process, and each edge in its own, with credentials of their roles.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsnode.localstack import grants

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)FunctionArn\}")
_PREFIX = "fsnode-"
# The role Step Functions runs the state machines as.
STATES_ROLE = "states"


@dataclass(frozen=True, slots=True)
class Workloads:
    """What was created: roles by component, machine and function ARNs by name, and the
    credentials of the components that run outside moto's process."""

    roles: dict[str, str]
    state_machines: dict[str, str]
    functions: dict[str, str]
    credentials: dict[str, dict[str, str]]


def snake_case(camel: str) -> str:
    """``PlanReplication`` into ``plan_replication`` (the naming rule in PROTOCOL.md)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def lambda_names(asl_text: str) -> list[str]:
    """The Chalice lambda-function names an ASL document's placeholders refer to."""
    return sorted({snake_case(m) for m in _PLACEHOLDER.findall(asl_text)})


def create(client: Any, functions_dir: Path, names: grants.LocalNames,
           env: dict[str, str]) -> Workloads:
    """Roles, functions and state machines; ``env`` is every function's environment."""
    texts = {path.name.removesuffix(".asl.json"): path.read_text()
             for path in sorted((functions_dir / "statemachines").glob("*.asl.json"))}
    lambdas = sorted({name for text in texts.values() for name in lambda_names(text)}
                     | set(grants.invoked_by_api_handler()))
    missing = [name for name in lambdas if name not in grants.grants()]
    if missing:
        raise KeyError(f"no grants for {missing}: add them to {grants.GRANTS_JSON}")
    iam = client("iam")
    roles = {component: _role(iam, component, grants.policy(component, names),
                              "edge" if component == "edge" else "function")
             for component in grants.grants()}
    roles[STATES_ROLE] = _role(iam, STATES_ROLE, grants.state_machine_policy(
        texts.values(), names), "states")
    settings = {**env, **{grants.function_setting(name): _PREFIX + name
                          for name in grants.invoked_by_api_handler()}}
    lam = client("lambda")
    functions = {name: lam.create_function(
        FunctionName=_PREFIX + name, Runtime="python3.11", Role=roles[name],
        Handler=f"app.{name}", Code={"ZipFile": _code_zip()}, Timeout=60,
        Environment={"Variables": settings})["FunctionArn"] for name in lambdas}
    sfn = client("stepfunctions")
    machines = {}
    for machine, text in texts.items():
        definition = _PLACEHOLDER.sub(lambda m: functions[snake_case(m.group(1))], text)
        machines[machine] = sfn.create_state_machine(
            name=_PREFIX + machine, definition=definition,
            roleArn=roles[STATES_ROLE])["stateMachineArn"]
    # The handlers start executions too, so they learn the machines' ARNs.
    for name in lambdas:
        lam.update_function_configuration(
            FunctionName=_PREFIX + name,
            Environment={"Variables": {**settings, **state_machine_settings(machines)}})
    outside = [c for c in grants.grants() if c not in lambdas]  # API server and edges
    sts = client("sts")
    credentials = {component: _assume(sts, roles[component], component)
                   for component in outside}
    return Workloads(roles=roles, state_machines=machines, functions=functions,
                     credentials=credentials)


def state_machine_settings(machines: dict[str, str]) -> dict[str, str]:
    return {
        f"FSNODE_{name.upper()}_STATE_MACHINE_ARN": arn for name, arn in sorted(machines.items())
    }


def function_settings() -> dict[str, str]:
    """The API handler's ``FSNODE_{NAME}_FUNCTION`` settings for the local functions."""
    return {grants.function_setting(name): _PREFIX + name
            for name in grants.invoked_by_api_handler()}


def role_arn(component: str) -> str:
    """The ARN the role of ``component`` gets (known before it exists)."""
    return f"arn:aws:iam::{grants.ACCOUNT}:role/{_role_name(component)}"


def _role_name(component: str) -> str:
    return f"{_PREFIX}{component.replace('_', '-')}"


def _role(iam: Any, component: str, policy: dict[str, Any], principal: str) -> str:
    name = _role_name(component)
    arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(
        grants.trust_policy(principal)))["Role"]["Arn"])
    if policy["Statement"]:
        iam.put_role_policy(RoleName=name, PolicyName="grants",
                            PolicyDocument=json.dumps(policy))
    return arn


def _assume(sts: Any, role_arn: str, component: str) -> dict[str, str]:
    # moto does not expire assumed credentials; 12 h is the most AWS gives a role.
    answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=f"fsnode-{component}"[:64],
                             DurationSeconds=43200)["Credentials"]
    return {"access_key_id": answer["AccessKeyId"],
            "secret_access_key": answer["SecretAccessKey"],
            "session_token": answer["SessionToken"]}


def _code_zip() -> bytes:
    # moto stores the code but never runs it: invocations go to the handler in-process.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "fsnode local stack: handlers run in-process\n")
    return buffer.getvalue()
