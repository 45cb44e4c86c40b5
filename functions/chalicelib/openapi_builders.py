"""Building blocks of the OpenAPI document: security requirements, schema helpers
that say what ``chalicelib.validate`` accepts, and one operation with its error answers."""

from __future__ import annotations

from typing import Any

# Security requirement lists. Management routes take an API key (``Authorization: Bearer
# KEY``), checked by the API-key authorizer before the route runs, in AWS and locally.
MANAGED: list[dict[str, list[str]]] = [{"apiKey": []}]
NODE: list[dict[str, list[str]]] = [{"nodeCredential": []}]
PUBLIC: list[dict[str, list[str]]] = []

ID_PATTERN = "^[0-9a-f]{32}$"
SHA256_PATTERN = "^[0-9a-f]{64}$"
MAX_INT = 2**62


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def string(max_len: int = 1024, **extra: Any) -> dict[str, Any]:
    """What ``validate.string`` accepts."""
    return {"type": "string", "minLength": 1, "maxLength": max_len, **extra}


def integer(low: int = 0, high: int = MAX_INT) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def obj(
    required: dict[str, Any],
    optional: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An object schema; unknown fields are ignored by the app, so they are allowed."""
    schema: dict[str, Any] = {"type": "object", "properties": {**required, **(optional or {})}}
    if required:
        schema["required"] = list(required)
    return schema


ID = {"type": "string", "pattern": ID_PATTERN}
SHA256 = {"type": "string", "pattern": SHA256_PATTERN}


def anchored(compiled: Any) -> str:
    """A validator's regular expression as an anchored JSON Schema pattern."""
    return f"^(?:{compiled.pattern})$"


# fmt: off
ERROR_TEXT = {
    400: "invalid input", 401: "missing or wrong credential", 403: "forbidden",
    404: "not found", 409: "conflict", 410: "gone (deleted, or another version)",
    413: "body too large", 415: "body is not JSON", 416: "range not satisfiable",
    503: "a dependency (store, CA, bucket) is unavailable",
}
# fmt: on


def path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or ID}


def query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def op(
    summary: str,
    security: list[dict[str, list[str]]],
    answer: dict[str, Any] | None,
    errors: tuple[int, ...],
    *,
    body: dict[str, Any] | None = None,
    status: int = 200,
    params: list[dict[str, Any]] | None = None,
    media: str = "application/json",
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": summary}
    if answer is not None:
        ok["content"] = {media: {"schema": answer}}
    if headers:
        ok["headers"] = headers
    responses: dict[str, Any] = {str(status): ok}
    statuses = set(errors)
    if security:
        statuses.add(401)
    if body is not None:
        statuses |= {400, 413, 415}
    for code in sorted(statuses):
        responses[str(code)] = {"description": ERROR_TEXT[code], "content": _json(ref("Error"))}
    operation: dict[str, Any] = {"summary": summary, "security": security, "responses": responses}
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    return operation
