"""HTTP edges of the app: body parsing, and domain errors to JSON responses in ONE place."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from chalice import Blueprint, Chalice, Response
from chalice.app import Request
from fsnode_core.errors import FsnodeError, InvalidInput

from chalicelib import canonical
from chalicelib.observability import (
    METRIC_REQUEST_REFUSED,
    METRIC_SERVER_ERROR,
    flush_metrics,
    logger,
    metrics,
    tracer,
)

MAX_JSON_BODY = 1024 * 1024

# Chalice answers some requests itself (415, 405, unhandled 500) as {"Code", "Message"}.
_CHALICE_CODES = {
    "UnsupportedMediaType": "unsupported_media_type",
    "MethodNotAllowedError": "method_not_allowed",
    "BadRequestError": "invalid_input",
    "BadRequest": "invalid_input",
    "InternalServerError": "internal",
}


class PayloadTooLarge(FsnodeError):
    """The request body is larger than the control plane accepts."""

    code = "payload_too_large"
    status = 413


def error_response(status: int, code: str, message: str) -> Response:
    """The one JSON error shape of PROTOCOL.md."""
    return Response(
        body={"error": {"code": code, "message": message}},
        status_code=status,
        headers={"Content-Type": "application/json"},
    )


def from_domain(exc: FsnodeError) -> Response:
    """A domain error as its HTTP answer: the status its class carries."""
    return Response(
        body={"error": exc.to_dict()},
        status_code=exc.status,
        headers={"Content-Type": "application/json"},
    )


View = Callable[..., Any]
Route = Callable[..., Callable[[View], View]]


def json_routes(owner: Chalice | Blueprint, **defaults: Any) -> Route:
    """The app's one route decorator, for ``owner``: ``owner.route(path, **defaults,
    **kwargs)`` over the view wrapped by :func:`json_errors`."""

    def route(path: str, **kwargs: Any) -> Callable[[View], View]:
        def decorate(view: View) -> View:
            routed: View = owner.route(path, **defaults, **kwargs)(json_errors(view))
            return routed

        return decorate

    return route


def json_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a view so domain errors become JSON answers with the right status (and traced)."""
    traced = tracer.capture_method(view)

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return traced(*args, **kwargs)
        except FsnodeError as exc:
            logger.info("request refused", extra={"code": exc.code, "error": exc.message})
            metrics.add_metric(name=METRIC_REQUEST_REFUSED, unit="Count", value=1)
            return from_domain(exc)
        except Exception:
            # A bug, not bad input: the traceback goes to the log under this request's
            # correlation id; the caller gets the error shape and no detail.
            logger.exception("unhandled error")
            return error_response(500, "internal", "an internal error occurred")

    return wrapper


def normalize(event: Any, get_response: Callable[[Any], Response]) -> Response:
    """Middleware: correlation ids on every log line; Chalice's own errors in our shape;
    metrics flushed."""
    context = getattr(event, "context", None) or {}
    # API Gateway's request id ties every log line of one request together (chalice
    # local gives none: a fresh id keeps lines of one request joinable there too).
    logger.set_correlation_id(context.get("requestId") or uuid.uuid4().hex)
    logger.append_keys(route=context.get("resourcePath"), method=getattr(event, "method", None))
    try:
        response = _refused(event) or get_response(event)
        if response.status_code >= 500:
            metrics.add_metric(name=METRIC_SERVER_ERROR, unit="Count", value=1)
    finally:
        flush_metrics()  # EMF lines only when the route added some
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and "Code" in body:
        code = _CHALICE_CODES.get(str(body["Code"]), "internal")
        fixed = error_response(response.status_code, code, str(body.get("Message", "")))
        fixed.headers = {**response.headers, "Content-Type": "application/json"}
        return fixed
    return response


def _refused(request: Any) -> Response | None:
    """The answer for a request that is not canonical (``chalicelib.canonical``)."""
    try:
        canonical.check_query(getattr(request, "query_params", None))
    except FsnodeError as exc:
        logger.info("request refused", extra={"code": exc.code, "error": exc.message})
        metrics.add_metric(name=METRIC_REQUEST_REFUSED, unit="Count", value=1)
        return from_domain(exc)
    return None


def json_body(request: Request, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """The request's JSON object body; 413/400 for oversized (past ``limit`` bytes),
    malformed or non-object bodies."""
    raw = request.raw_body or b""
    if len(raw) > limit:
        raise PayloadTooLarge("request body is too large", limit=limit)
    if not raw.strip():
        raise InvalidInput("request body must be a JSON object")
    data = canonical.parse_json(raw if isinstance(raw, bytes) else raw.encode())
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    return data
