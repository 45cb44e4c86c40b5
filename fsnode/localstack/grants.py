"""The local stack's IAM roles, from the same grants CDK puts in the template.

``infra/grants.json`` names every component's permissions in a small vocabulary
(``table:nodes``, ``objects:origin``, ``function:issue_certificate``...). CDK
(``infra/grants.py``) turns it into the deployed roles; this module turns it into
moto roles with the local resources' ARNs, so each process and in-process function
runs with exactly what its role has in AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

GRANTS_JSON = Path(__file__).resolve().parents[2] / "infra" / "grants.json"
ACCOUNT = "123456789012"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)FunctionArn\}")
TRUST = {
    "function": "lambda.amazonaws.com",
    "states": "states.amazonaws.com",
    "edge": "ecs-tasks.amazonaws.com",
}


@cache
def grants() -> dict[str, list[dict[str, Any]]]:
    """Every component's grants, as ``infra/grants.json`` lists them."""
    components: dict[str, list[dict[str, Any]]] = json.loads(
        GRANTS_JSON.read_text(encoding="utf-8"))["components"]
    return components


def invoked_by_api_handler() -> list[str]:
    """The functions the API handler may invoke (each gets ``FSNODE_{NAME}_FUNCTION``)."""
    return sorted({resource.removeprefix("function:")
                   for grant in grants()["api_handler"] for resource in grant["resources"]
                   if resource.startswith("function:")})


def function_setting(name: str) -> str:
    """The API handler's setting that names function ``name``."""
    return f"FSNODE_{name.upper()}_FUNCTION"


@dataclass(frozen=True, slots=True)
class LocalNames:
    """The local stack's resources, by the names the grants use."""

    region: str
    tables: Mapping[str, str]
    bucket: str
    import_buckets: tuple[str, ...] = ()
    ca_arn: str = ""
    secrets: Mapping[str, str] = field(default_factory=dict)
    zone_id: str = ""  # public names (a domain): the hosted zone and the ACM certificate
    public_certificate_arn: str = ""
    function_prefix: str = "fsnode-"
    machine_prefix: str = "fsnode-"

    def function_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT}:function:{self.function_prefix}{name}"

    def machine_arn(self, name: str) -> str:
        return f"arn:aws:states:{self.region}:{ACCOUNT}:stateMachine:{self.machine_prefix}{name}"

    def arns(self, resource: str) -> list[str]:
        """The ARNs one grant resource stands for here (none: an empty import list)."""
        kind, _, name = resource.partition(":")
        table = f"arn:aws:dynamodb:{self.region}:{ACCOUNT}:table/"
        if resource == "*":
            return ["*"]
        if kind == "table":
            return [table + self.tables[name]]
        if kind == "index":
            return [f"{table}{self.tables[name]}/index/*"]
        if kind in ("bucket", "objects"):
            which, _, prefix = name.partition("/")
            buckets = [self.bucket] if which == "origin" else list(self.import_buckets)
            suffix = "" if kind == "bucket" else f"/{prefix or '*'}"
            return [f"arn:aws:s3:::{bucket}{suffix}" for bucket in buckets]
        if kind == "ca":
            return [self.ca_arn]
        if kind == "secret":
            return [self.secrets[name]] if name in self.secrets else []
        if kind == "zone":
            return [f"arn:aws:route53:::hostedzone/{self.zone_id}"] if self.zone_id else []
        if kind == "public_certificate":
            return [self.public_certificate_arn] if self.public_certificate_arn else []
        if kind == "state_machine":
            return [self.machine_arn(name)]
        if kind == "executions":
            return [f"arn:aws:states:{self.region}:{ACCOUNT}:execution:"
                    f"{self.machine_prefix}{name}:*"]
        if kind == "function":
            return [self.function_arn(name)]
        raise ValueError(f"infra/grants.json: unknown resource {resource!r}")


def policy(component: str, names: LocalNames) -> dict[str, Any]:
    """The IAM policy document of ``component``'s role, with local ARNs."""
    statements = []
    for grant in grants()[component]:
        resources = [arn for resource in grant["resources"] for arn in names.arns(resource)]
        if not resources:
            continue  # e.g. objects:imports with no import bucket
        statement: dict[str, Any] = {"Effect": "Allow", "Action": grant["actions"],
                                     "Resource": resources}
        if grant.get("condition"):
            statement["Condition"] = grant["condition"]
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def state_machine_policy(asl_texts: Iterable[str], names: LocalNames) -> dict[str, Any]:
    """Step Functions' role: invoke exactly the functions the ASL files name."""
    functions = sorted({_snake(match) for text in asl_texts
                        for match in _PLACEHOLDER.findall(text)})
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
        "Resource": [names.function_arn(name) for name in functions]}]}


def trust_policy(principal: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": TRUST[principal]},
        "Action": "sts:AssumeRole"}]}


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
