"""Every role in the template holds exactly what infra/grants.json gives it.

The local stack builds its roles from the same file and moto enforces them
(tests/e2e/test_grants.py), so the template's grants are the ones tests ran under.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import grants

from .conftest import Synthesis, of_type

GRANTS = grants.load()
# Resource logical-id prefixes, by the names grants.json uses.
_PREFIXES = {
    "StorageNodesTable": "nodes",
    "StorageChunksTable": "chunks",
    "StorageIdempotencyTable": "idempotency",
    "StorageApiKeysTable": "api_keys",
    "SecretsJoinToken": "join_token",
    "SecretsSigningKeyring": "signing_keyring",
    "SecretsAdminApiKey": "admin_key",
}


def _name(logical_id: str) -> str:
    return next(name for prefix, name in _PREFIXES.items() if logical_id.startswith(prefix))


def _kind(resource: Any, functions: dict[str, str]) -> str:
    """A template resource ARN as grants.json names it."""
    if resource == "*":
        return "*"
    text = json.dumps(resource)
    if "Fn::Join" in resource and ":stateMachine:" in text:
        return "state_machine:" + text.rsplit("-", 1)[1].split('"')[0]
    if "Fn::Join" in resource and ":execution:" in text:
        return "executions:" + text.rsplit("-", 1)[1].split(":")[0]
    if "Fn::Join" in resource:
        (target, _), suffix = resource["Fn::Join"][1][0]["Fn::GetAtt"], resource["Fn::Join"][1][1]
        if target.startswith("StorageOrigin") and suffix.startswith("/"):
            return "objects:origin" + ("" if suffix == "/*" else suffix)
        if suffix == "/index/*":
            return f"index:{_name(target)}"
    if "Fn::GetAtt" in resource:
        target = resource["Fn::GetAtt"][0]
        if target in functions:
            return f"function:{functions[target]}"
        if target.startswith("StorageOrigin"):
            return "bucket:origin"
        if target.startswith("PkiAuthority"):
            return "ca"
        return f"table:{_name(target)}"
    if "Ref" in resource:
        return f"secret:{_name(resource['Ref'])}"
    raise AssertionError(f"unexpected resource {text}")


def _functions(resources: dict[str, Any]) -> dict[str, str]:
    """Logical id -> function name (``api_handler``, or the handler's attribute)."""
    named = {}
    for logical_id, function in of_type(resources, "AWS::Serverless::Function").items():
        attribute = function["Properties"]["Handler"].rpartition(".")[2]
        named[logical_id] = "api_handler" if attribute == "app" else attribute
    return named


def _granted(
    resources: dict[str, Any], role_id: str, functions: dict[str, str]
) -> set[tuple[str, str]]:
    pairs = set()
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"]
            targets = statement["Resource"]
            condition = _condition(statement.get("Condition"))
            for action in actions if isinstance(actions, list) else [actions]:
                for target in targets if isinstance(targets, list) else [targets]:
                    pairs.add((action, _kind(target, functions) + condition))
    return pairs


def _condition(condition: Any) -> str:
    """A grant's condition as part of what it grants (none: "")."""
    return "" if condition is None else " if " + json.dumps(condition, sort_keys=True)


# Resources a stack has only with public names (a domain and its zone).
ONLY_WITH_A_DOMAIN = ("zone", "public_certificate", "secret:public_certificate")


def _wanted(component: str, have_imports: bool, functions: set[str]) -> set[tuple[str, str]]:
    pairs = set()
    for grant in GRANTS[component]:
        for resource in grant["resources"]:
            if "imports" in resource and not have_imports:
                continue
            if resource in ONLY_WITH_A_DOMAIN:
                continue  # these tests synthesize without public names
            if resource.startswith("function:") and resource[9:] not in functions:
                continue
            condition = _condition(grant.get("condition"))
            pairs |= {(action, resource + condition) for action in grant["actions"]}
    return pairs


def _roles(resources: dict[str, Any]) -> dict[str, str]:
    """Component -> role logical id: each function's role, and the edges' task role."""
    functions = _functions(resources)
    roles = {
        functions[logical_id]: function["Properties"]["Role"]["Fn::GetAtt"][0]
        for logical_id, function in of_type(resources, "AWS::Serverless::Function").items()
    }
    (task,) = of_type(resources, "AWS::ECS::TaskDefinition").values()
    roles["edge"] = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    return roles


def test_every_component_holds_exactly_its_grants(synthesis: Synthesis) -> None:
    resources = synthesis.template["Resources"]
    functions = _functions(resources)
    roles = _roles(resources)
    assert set(roles) <= set(GRANTS), "a function without an entry in infra/grants.json"
    if not synthesis.uses_placeholder_functions:
        assert set(roles) == set(GRANTS), "an entry in infra/grants.json without a function"
    for component, role_id in roles.items():
        assert _granted(resources, role_id, functions) == _wanted(
            component, False, set(functions.values())
        ), component


def test_the_public_api_handler_cannot_issue_certificates_delete_or_complete_tasks(
    synthesis: Synthesis,
) -> None:
    resources = synthesis.template["Resources"]
    functions = _functions(resources)
    roles = _roles(resources)
    forbidden = {
        "acm-pca:IssueCertificate",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
        "states:SendTaskHeartbeat",
    }
    held = {
        component: {action for action, _ in _granted(resources, role, functions)}
        for component, role in roles.items()
    }
    assert not held["api_handler"] & forbidden
    if not synthesis.uses_placeholder_functions:
        # Each right lives in the one function that needs it.
        assert {c for c, actions in held.items() if "acm-pca:IssueCertificate" in actions} == {
            "issue_certificate"
        }
        # Deletes belong to the functions that collect and tidy published objects.
        assert {c for c, actions in held.items() if "s3:DeleteObject" in actions} == {
            "gc_step",
            "publish_file",
            "prune",
        }
        assert {c for c, actions in held.items() if "states:SendTaskSuccess" in actions} == {
            "report_work"
        }
        env = resources["APIHandler"]["Properties"]["Environment"]["Variables"]
        assert env["FSNODE_ISSUE_CERTIFICATE_FUNCTION"] == {"Ref": "IssueCertificate"}
        assert env["FSNODE_REPORT_WORK_FUNCTION"] == {"Ref": "ReportWork"}


def test_import_buckets_are_granted_to_whom_grants_json_says(
    custom_synthesis: Synthesis,
) -> None:
    resources = custom_synthesis.template["Resources"]
    roles = _roles(resources)
    readers = set()
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "media-archive" in json.dumps(statement["Resource"]):
                readers |= {role["Ref"] for role in policy["Properties"]["Roles"]}
    wanted = {
        roles[component]
        for component, entries in GRANTS.items()
        if component in roles
        and any("imports" in r for grant in entries for r in grant["resources"])
    }
    assert readers == wanted and roles["edge"] in readers


@pytest.mark.parametrize("component", sorted(GRANTS))
def test_every_grant_says_why_and_uses_the_vocabulary(component: str) -> None:
    kinds = (
        "table",
        "index",
        "bucket",
        "objects",
        "ca",
        "secret",
        "state_machine",
        "executions",
        "function",
        "zone",
        "public_certificate",
    )
    for grant in GRANTS[component]:
        assert len(grant["why"]) > 10, grant
        assert all("*" not in action for action in grant["actions"]), grant
        for resource in grant["resources"]:
            assert resource == "*" or resource.partition(":")[0] in kinds, resource
