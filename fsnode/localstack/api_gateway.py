"""What API Gateway does in front of the control plane, done the same way by ``chalice
local`` (the local stack's API server) and by Chalice's test client.

``chalice local`` runs routes and the API-key authorizer like API Gateway, but lets
through what API Gateway refuses and answers some refusals differently. ``install``
patches it, in this process, to:

- refuse a request body over 10 MB, and a Lambda event over Lambda's 6 MB (413);
- answer 504 when the route's function has not answered within 29 s (the function
  runs on, as a Lambda does after API Gateway gave up), and 502 when its answer is
  over Lambda's 6 MB response limit;
- answer 401 when the authorizer fails with ``Unauthorized`` and 500 when it fails
  otherwise, and cache each authorizer answer per token for the authorizer's TTL (a
  revoked key is accepted that long, as in AWS);
- answer every refusal with the gateway responses the deployed API has
  (``functions/gateway_responses.json``, which CDK puts on the API too).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fsnode.localstack import aws_limits
from fsnode.localstack.moto_patches import Patches

GATEWAY_RESPONSES = Path(__file__).resolve().parents[2] / "functions" / "gateway_responses.json"
# API Gateway's default authorizer TTL when the authorizer names none.
DEFAULT_AUTHORIZER_TTL = 300


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """How the patched gateway behaves (``install`` may change it while installed)."""

    timeout_seconds: float
    cache_authorizers: bool


_patches = Patches()
settings = GatewaySettings(aws_limits.API_GATEWAY_TIMEOUT_SECONDS, cache_authorizers=True)
_cache: dict[tuple[str, str], tuple[float, Any]] = {}
_cache_lock = threading.Lock()
clock: Callable[[], float] = time.monotonic  # tests move time on


@cache
def gateway_responses() -> dict[str, dict[str, Any]]:
    """The deployed API's gateway responses by type: ``{status, code, message}``."""
    table: dict[str, dict[str, Any]] = json.loads(GATEWAY_RESPONSES.read_text())
    return table


def gateway_error(response_type: str, request_id: str = "") -> Exception:
    """A ``chalice.local`` error carrying the gateway response of ``response_type``."""
    from chalice.local import LocalGatewayException

    spec = gateway_responses()[response_type]
    body = {"error": {"code": spec["code"], "message": spec["message"]}}
    error = LocalGatewayException(
        {
            "x-amzn-ErrorType": response_type,
            "x-amzn-RequestId": request_id,
            "Content-Type": "application/json",
        },
        json.dumps(body).encode(),
    )
    error.CODE = int(spec["status"])  # chalice reads the status from CODE
    return error


def install(*, timeout_seconds: float | None = None, cache_authorizers: bool = True) -> None:
    """Patch ``chalice.local`` in this process (once; a second call only changes the
    settings; ``uninstall`` undoes it). The timeout defaults to API Gateway's 29 s (a
    test may lower it through ``FSNODE_LOCAL_API_TIMEOUT_SECONDS``)."""
    from chalice.app import ChaliceAuthorizer
    from chalice.local import LocalGateway

    global settings
    settings = GatewaySettings(
        timeout_seconds=timeout_seconds
        or aws_limits.lowered(
            aws_limits.API_GATEWAY_TIMEOUT_ENV, aws_limits.API_GATEWAY_TIMEOUT_SECONDS
        ),
        cache_authorizers=cache_authorizers,
    )
    if _patches.active:
        return
    handle_request = LocalGateway.handle_request
    generate_event = LocalGateway._generate_lambda_event
    call_authorizer = ChaliceAuthorizer.__call__

    def gated_request(self: Any, method: str, path: str, headers: Any, body: Any) -> Any:
        if body is not None and len(body) > aws_limits.API_GATEWAY_PAYLOAD_BYTES:
            raise gateway_error("REQUEST_TOO_LARGE")
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["response"] = handle_request(self, method, path, headers, body)
            except BaseException as exc:  # handed to the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=run, name="local-api-integration", daemon=True)
        worker.start()
        worker.join(settings.timeout_seconds)
        if worker.is_alive():
            raise gateway_error("INTEGRATION_TIMEOUT")
        if "error" in outcome:
            raise _as_gateway_error(outcome["error"]) from None
        response = outcome["response"]
        if _json_size(response) > aws_limits.LAMBDA_RESPONSE_BYTES:
            raise gateway_error("INTEGRATION_FAILURE")
        return response

    def sized_event(self: Any, method: str, path: str, headers: Any, body: Any) -> Any:
        event = generate_event(self, method, path, headers, body)
        if _event_size(event) >= aws_limits.LAMBDA_REQUEST_BYTES:
            raise gateway_error("REQUEST_TOO_LARGE")
        return event

    def cached_authorizer(self: Any, event: dict[str, Any], context: Any) -> Any:
        ttl = getattr(getattr(self, "config", None), "ttl_seconds", None)
        ttl = DEFAULT_AUTHORIZER_TTL if ttl is None else int(ttl)
        key = (str(self.name), str(event.get("authorizationToken", "")))
        if settings.cache_authorizers and ttl > 0:
            with _cache_lock:
                hit = _cache.get(key)
            if hit is not None and clock() < hit[0]:
                return copy.deepcopy(hit[1])
        try:
            answer = call_authorizer(self, event, context)
        except Exception as exc:
            # API Gateway: exactly "Unauthorized" is a 401; any other failure a 500.
            kind = "UNAUTHORIZED" if str(exc) == "Unauthorized" else "AUTHORIZER_FAILURE"
            raise gateway_error(kind) from None
        if settings.cache_authorizers and ttl > 0:
            with _cache_lock:
                _cache[key] = (clock() + ttl, copy.deepcopy(answer))
        return answer

    _patches.set(LocalGateway, "handle_request", gated_request)
    _patches.set(LocalGateway, "_generate_lambda_event", sized_event)
    _patches.set(ChaliceAuthorizer, "__call__", cached_authorizer)


def uninstall() -> None:
    """Undo ``install`` and forget cached authorizer answers."""
    _patches.undo()
    forget_authorizations()


def forget_authorizations() -> None:
    """Empty the authorizer cache (as a redeploy of the API would)."""
    with _cache_lock:
        _cache.clear()


def _as_gateway_error(exc: BaseException) -> BaseException:
    """chalice.local's own refusals, answered as the deployed API's gateway responses."""
    from chalice.local import (
        ForbiddenError,
        InvalidAuthorizerError,
        LocalGatewayException,
        NotAuthorizedError,
    )

    if not isinstance(exc, LocalGatewayException):
        return exc
    if exc.headers.get("x-amzn-ErrorType") in gateway_responses():
        return exc  # already a gateway response (raised by this module)
    if isinstance(exc, NotAuthorizedError):
        return gateway_error("UNAUTHORIZED")
    if isinstance(exc, InvalidAuthorizerError):
        return gateway_error("AUTHORIZER_CONFIGURATION_ERROR")
    if isinstance(exc, ForbiddenError):
        # chalice marks a route it lacks UnauthorizedException, a policy's refusal
        # AccessDeniedException (API Gateway: MISSING_AUTHENTICATION_TOKEN, ACCESS_DENIED).
        denied = exc.headers.get("x-amzn-ErrorType") == "AccessDeniedException"
        return gateway_error("ACCESS_DENIED" if denied else "MISSING_AUTHENTICATION_TOKEN")
    return exc


def _json_size(value: Any) -> int:
    return len(json.dumps(value, default=_bytes_as_text).encode())


def _event_size(event: dict[str, Any]) -> int:
    # The body is still bytes here (base64 text when binary); Lambda receives it as a
    # JSON string, about its own length.
    body = event.get("body")
    rest = {key: value for key, value in event.items() if key != "body"}
    return _json_size(rest) + (len(body) if body else 0)


def _bytes_as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return value.decode("latin-1")
    raise TypeError(f"not JSON: {type(value).__name__}")
