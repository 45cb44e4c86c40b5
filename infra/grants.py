"""Every role's permissions from ``infra/grants.json``: the one place a grant is added.

The same file gives the local stack its roles (fsnode/localstack/grants.py), which moto
then enforces, so the grants tests run under are the grants deployed. Adding a grant
for a new function is one entry in the JSON file (docs/PROTOCOL.md, Grants).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.aws_dynamodb import ITable
from aws_cdk.aws_secretsmanager import ISecret
from constructs import IConstruct

from infra.nag import acknowledge, resource_finding

GRANTS_JSON = Path(__file__).resolve().parent / "grants.json"


def load(path: Path = GRANTS_JSON) -> dict[str, list[dict[str, Any]]]:
    """Every component's grants, as the file lists them."""
    components: dict[str, list[dict[str, Any]]] = json.loads(
        path.read_text(encoding="utf-8"))["components"]
    return components


def invoked_by_api_handler(components: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    """The functions the API handler may invoke (each gets ``FSNODE_{NAME}_FUNCTION``)."""
    return sorted({resource.removeprefix("function:")
                   for grant in components.get("api_handler", [])
                   for resource in grant["resources"] if resource.startswith("function:")})


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """The stack's resources, by the names grants.json uses."""

    tables: Mapping[str, ITable]
    origin: s3.IBucket
    imports: Sequence[s3.IBucket]
    ca_arn: str
    secrets: Mapping[str, ISecret]
    state_machine_arn: Callable[[str], str]
    executions_arn: Callable[[str], str]
    function_arns: Mapping[str, str] = field(default_factory=dict)
    # Public names (none without a domain: their grants are dropped).
    zone_arns: Sequence[str] = ()
    public_certificate_arns: Sequence[str] = ()

    def arns(self, resource: str) -> list[str]:
        """The ARNs one grant resource stands for (none: no import bucket, or a function
        this app does not have)."""
        kind, _, name = resource.partition(":")
        if resource == "*":
            return ["*"]
        if kind == "table":
            return [self.tables[name].table_arn]
        if kind == "index":
            return [f"{self.tables[name].table_arn}/index/*"]
        if kind in ("bucket", "objects"):
            which, _, prefix = name.partition("/")
            buckets = [self.origin] if which == "origin" else list(self.imports)
            if kind == "bucket":
                return [bucket.bucket_arn for bucket in buckets]
            return [bucket.arn_for_objects(prefix or "*") for bucket in buckets]
        if kind == "ca":
            return [self.ca_arn]
        if kind == "secret":
            return [self.secrets[name].secret_arn] if name in self.secrets else []
        if kind == "zone":
            return list(self.zone_arns)
        if kind == "public_certificate":
            return list(self.public_certificate_arns)
        if kind == "state_machine":
            return [self.state_machine_arn(name)]
        if kind == "executions":
            return [self.executions_arn(name)]
        if kind == "function":
            return [self.function_arns[name]] if name in self.function_arns else []
        raise ValueError(f"{GRANTS_JSON.name}: unknown resource {resource!r}")


def statements(grants: Sequence[Mapping[str, Any]], resources: Resources
               ) -> list[iam.PolicyStatement]:
    """One policy statement per grant (dropped when it names no resource here)."""
    made = []
    for grant in grants:
        arns = [arn for resource in grant["resources"] for arn in resources.arns(resource)]
        if arns:
            made.append(iam.PolicyStatement(actions=list(grant["actions"]), resources=arns,
                                            conditions=grant.get("condition")))
    return made


def apply(role: iam.IRole, grants: Sequence[Mapping[str, Any]], resources: Resources) -> None:
    """Give ``role`` exactly these grants; acknowledge each wildcard with its reason."""
    findings: dict[str, str] = {}
    for statement in statements(grants, resources):
        role.add_to_principal_policy(statement)
    for grant in grants:
        for resource in grant["resources"]:
            for arn in resources.arns(resource):
                if "*" in arn:
                    findings[resource_finding(role, arn)] = grant["why"]
    _acknowledge_wildcards(role, findings)


def _acknowledge_wildcards(role: IConstruct, findings: Mapping[str, str]) -> None:
    if not findings:
        return
    acknowledge(
        role,
        "AwsSolutions-IAM5",
        ("Wildcards only inside fsnode's own resources (object keys, table indexes, "
         "executions named at run time) or where the action has no resource type (task "
         "tokens): " + "; ".join(sorted(set(findings.values())))),
        sorted(findings),
    )
