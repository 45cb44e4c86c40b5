"""The control plane's HTTP API as the client sees it: one call, and its errors."""

from __future__ import annotations

import re
from typing import Any

import requests

from fsnode.settings import ClientSettings

# File ids and key ids are both 32 lowercase hex.
_ID = re.compile(r"[0-9a-f]{32}")


class ApiError(Exception):
    """The control plane (or S3, or an edge) answered with an error."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def is_id(value: str) -> bool:
    """Whether ``value`` is shaped as a file or key id (32 lowercase hex)."""
    return _ID.fullmatch(value) is not None


def check_file_id(file_id: str) -> str:
    """Refuse a malformed id before it reaches a URL path (``../`` would change the route)."""
    if not is_id(file_id):
        raise ApiError(400, "invalid_input", f"not a file id (32 lowercase hex): {file_id!r}")
    return file_id


def given(**fields: Any) -> dict[str, Any]:
    """The optional fields of a request body that were given (not None)."""
    return {name: value for name, value in fields.items() if value is not None}


def call_api(
    session: requests.Session,
    settings: ClientSettings,
    timeout: float,
    method: str,
    path: str,
    **kwargs: Any,
) -> dict[str, Any]:
    """One API call; its JSON answer, or ``ApiError`` with the error's code and message."""
    # The same header for the local stack and AWS: API Gateway's authorizer reads it.
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    try:
        response = session.request(
            method, f"{settings.api_url}{path}", headers=headers, timeout=timeout, **kwargs
        )
    except requests.RequestException as exc:
        raise ApiError(0, "unreachable", f"cannot reach {settings.api_url}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if not response.ok:
        error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
        if not error and isinstance(body, dict) and "message" in body:
            # API Gateway's (and chalice local's) own answer, e.g. for a route it lacks.
            error = {"code": "http_error", "message": f"{body['message']} ({method} {path})"}
        raise ApiError(
            response.status_code,
            str(error.get("code", "http_error")),
            str(error.get("message", response.text[:500] or response.reason)),
            error.get("details") if isinstance(error.get("details"), dict) else None,
        )
    if not isinstance(body, dict):
        raise ApiError(response.status_code, "bad_response", "the answer was not JSON")
    return body
