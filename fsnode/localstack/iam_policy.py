"""Evaluate identity policies the way IAM does, for the requests the local stack makes.

moto's own check compares the action only (every resource but S3's is ``*`` to it) and
turns a statement whose condition it cannot evaluate into a Deny. This evaluator is
small and strict: an explicit Deny wins, else an Allow must match the action (case
insensitive, ``*`` and ``?`` wildcards), the resource (case sensitive, wildcards) and
every condition. Conditions support ``StringEquals``/``StringLike`` (and their
``ForAnyValue:`` forms) on the context keys a request supplies; a condition on a key
the request does not supply does not match (fail closed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any


def allows(
    policies: Iterable[Mapping[str, Any]],
    action: str,
    resource: str,
    context: Mapping[str, str] | None = None,
) -> bool:
    """Whether these policy documents allow ``action`` on ``resource``."""
    allowed = False
    for policy in policies:
        statements = policy.get("Statement", [])
        for statement in statements if isinstance(statements, list) else [statements]:
            if not _applies(statement, action, resource, context or {}):
                continue
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _applies(
    statement: Mapping[str, Any], action: str, resource: str, context: Mapping[str, str]
) -> bool:
    if "NotAction" in statement or "NotResource" in statement:
        return False  # fsnode's policies use neither; refuse to guess their meaning
    actions = _as_list(statement.get("Action"))
    resources = _as_list(statement.get("Resource"))
    return (
        any(_matches(pattern, action, ignore_case=True) for pattern in actions)
        and any(_matches(pattern, resource, ignore_case=False) for pattern in resources)
        and _conditions_hold(statement.get("Condition") or {}, context)
    )


def _conditions_hold(conditions: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, tests in conditions.items():
        any_value = operator.startswith("ForAnyValue:")
        base = operator.removeprefix("ForAnyValue:")
        if base not in ("StringEquals", "StringLike"):
            return False
        for key, wanted in tests.items():
            if key not in context:
                return False
            value = context[key]
            patterns = _as_list(wanted)
            if base == "StringEquals":
                hit = value in patterns
            else:
                hit = any(_matches(pattern, value, ignore_case=False) for pattern in patterns)
            if not hit and not any_value:
                return False
    return True


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def _matches(pattern: str, value: str, *, ignore_case: bool) -> bool:
    return _compiled(pattern, ignore_case).fullmatch(value) is not None


@cache
def _compiled(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    # IAM wildcards: * any run of characters (across ':' and '/'), ? one character;
    # everything else is literal.
    translated = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.compile(translated, re.DOTALL | (re.IGNORECASE if ignore_case else 0))
