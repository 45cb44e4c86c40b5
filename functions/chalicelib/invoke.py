"""Calls from the API handler to the functions that hold rights it must not hold.

The public API handler cannot issue certificates or wake workflows (its role lacks
``acm-pca:IssueCertificate`` and ``states:SendTask*``): it invokes ``issue_certificate``
and ``report_work`` synchronously instead (their names come in
``FSNODE_ISSUE_CERTIFICATE_FUNCTION``, ``FSNODE_REPORT_WORK_FUNCTION``). A domain
error raised in the function travels back in the answer and is raised again here, so
the caller answers as if it had run the code itself.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core import errors
from fsnode_core.errors import FsnodeError, Unavailable

from chalicelib import aws
from chalicelib.observability import logger

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def call(function_name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Invoke ``function_name`` and return its result (or raise its domain error)."""
    if not function_name:
        raise Unavailable("the function this needs is not configured")
    try:
        answer = aws.client("lambda").invoke(
            FunctionName=function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps(payload).encode(),
        )
        body = json.loads(answer["Payload"].read() or b"null")
    except (ClientError, BotoCoreError, ValueError) as exc:
        raise Unavailable("a control-plane function could not be reached") from exc
    if answer.get("FunctionError") or not isinstance(body, dict):
        logger.error(
            "invoked function failed", extra={"function": function_name, "answer": str(body)[:2000]}
        )
        raise Unavailable("a control-plane function failed")
    if "error" in body:
        raise _domain_error(body["error"])
    result: dict[str, Any] = body["result"]
    return result


def invoked(handler: Handler) -> Handler:
    """Wrap an invoked function: ``{"result": ...}``, or its domain error as
    ``{"error": {code, message, details}}`` for ``call`` to raise again."""

    @functools.wraps(handler)
    def wrapper(event: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"result": handler(event)}
        except FsnodeError as exc:
            return {"error": exc.to_dict()}

    return wrapper


def _domain_error(body: dict[str, Any]) -> FsnodeError:
    kind = _ERRORS_BY_CODE.get(str(body.get("code")), Unavailable)
    error = kind.__new__(kind)
    FsnodeError.__init__(error, str(body.get("message", "")), **(body.get("details") or {}))
    return error


def _subclasses(base: type[FsnodeError]) -> list[type[FsnodeError]]:
    found = []
    for sub in base.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


_ERRORS_BY_CODE = {kind.code: kind for kind in _subclasses(errors.FsnodeError)}
