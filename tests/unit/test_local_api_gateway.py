"""The local API server refuses what API Gateway refuses, and answers as the deployed API.

A small Chalice app served by ``chalice local`` on loopback, with
``fsnode.localstack.api_gateway`` installed, as the local stack's API server runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from chalice import AuthResponse, Chalice
from chalice.app import AuthRequest, AuthRoute
from chalice.config import Config
from chalice.local import create_local_server

from fsnode.localstack import api_gateway, aws_limits, processes

app = Chalice(app_name="gateway-test")
authorizer_calls: list[str] = []
release = threading.Event()


@app.authorizer(ttl_seconds=60)
def keys(auth_request: AuthRequest) -> AuthResponse:
    authorizer_calls.append(auth_request.token)
    if auth_request.token == "Bearer boom":
        raise RuntimeError("the table is unreachable")
    if auth_request.token not in ("Bearer all", "Bearer only-a"):
        raise Exception("Unauthorized")
    routes: list[str | AuthRoute] = ["*"] if auth_request.token == "Bearer all" else ["/a"]
    return AuthResponse(routes=routes, principal_id="p")


@app.route("/a", authorizer=keys)
def route_a() -> dict[str, str]:
    return {"route": "a"}


@app.route("/b", authorizer=keys)
def route_b() -> dict[str, str]:
    return {"route": "b"}


@app.route("/echo", methods=["POST"], content_types=["application/octet-stream"])
def echo() -> dict[str, int]:
    request = app.current_request
    assert request is not None  # chalice sets it while a route runs
    return {"bytes": len(request.raw_body)}


@app.route("/big")
def big() -> dict[str, str]:
    return {"blob": "x" * aws_limits.LAMBDA_RESPONSE_BYTES}


@app.route("/slow")
def slow() -> dict[str, bool]:
    return {"released": release.wait(30)}


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    previous = api_gateway.settings
    api_gateway.install(timeout_seconds=0.5, cache_authorizers=True)
    port = processes.free_port()
    server = create_local_server(app, Config.create(chalice_stage="local"), "127.0.0.1", port)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    release.set()
    server.shutdown()
    api_gateway.install(
        timeout_seconds=previous.timeout_seconds, cache_authorizers=previous.cache_authorizers
    )


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    now = [1000.0]
    monkeypatch.setattr(api_gateway, "clock", lambda: now[0])
    api_gateway.forget_authorizations()
    authorizer_calls.clear()
    yield now
    api_gateway.forget_authorizations()


def _error(answer: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"]["code"] == code, body
    assert answer.headers["Content-Type"].startswith("application/json")
    return dict(body["error"])


def test_a_body_over_10_mb_is_413(gateway: str) -> None:
    body = b"\0" * (aws_limits.API_GATEWAY_PAYLOAD_BYTES + 1)
    answer = requests.post(
        f"{gateway}/echo",
        data=body,
        timeout=60,
        headers={"Content-Type": "application/octet-stream"},
    )
    _error(answer, 413, "payload_too_large")


def test_a_lambda_event_over_6_mb_is_413_though_under_10_mb(gateway: str) -> None:
    ok = requests.post(
        f"{gateway}/echo",
        data=b"\0" * 1024,
        timeout=60,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert ok.json() == {"bytes": 1024}
    answer = requests.post(
        f"{gateway}/echo",
        data=b"\0" * aws_limits.LAMBDA_REQUEST_BYTES,
        timeout=60,
        headers={"Content-Type": "application/octet-stream"},
    )
    _error(answer, 413, "payload_too_large")


def test_an_answer_over_lambdas_6_mb_is_502(gateway: str) -> None:
    _error(requests.get(f"{gateway}/big", timeout=60), 502, "bad_gateway")


def test_a_route_slower_than_the_integration_timeout_is_504(gateway: str) -> None:
    release.clear()
    started = time.monotonic()
    _error(requests.get(f"{gateway}/slow", timeout=60), 504, "gateway_timeout")
    assert time.monotonic() - started < 30  # answered by the gateway, not by the route
    release.set()


def test_the_authorizer_answer_is_cached_per_key_for_its_ttl(
    gateway: str, fresh_cache: list[float]
) -> None:
    headers = {"Authorization": "Bearer all"}
    assert requests.get(f"{gateway}/a", headers=headers, timeout=10).json() == {"route": "a"}
    assert requests.get(f"{gateway}/b", headers=headers, timeout=10).json() == {"route": "b"}
    assert authorizer_calls == ["Bearer all"]  # the second route used the cached policy
    fresh_cache[0] += 61  # past the authorizer's TTL
    assert requests.get(f"{gateway}/a", headers=headers, timeout=10).status_code == 200
    assert authorizer_calls == ["Bearer all", "Bearer all"]


def test_a_cached_policy_still_names_only_its_routes(gateway: str) -> None:
    headers = {"Authorization": "Bearer only-a"}
    assert requests.get(f"{gateway}/a", headers=headers, timeout=10).status_code == 200
    _error(requests.get(f"{gateway}/b", headers=headers, timeout=10), 403, "forbidden")
    assert authorizer_calls == ["Bearer only-a"]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),  # no identity header: refused before the authorizer
        ({"Authorization": "Bearer nope"}, 401, "unauthorized"),  # raised "Unauthorized"
        ({"Authorization": "Bearer boom"}, 500, "internal"),  # the authorizer failed
    ],
)
def test_authorizer_refusals(gateway: str, headers: dict[str, str], status: int, code: str) -> None:
    _error(requests.get(f"{gateway}/a", headers=headers, timeout=10), status, code)


def test_an_unknown_route_is_404_in_the_error_shape(gateway: str) -> None:
    _error(requests.get(f"{gateway}/nowhere", timeout=10), 404, "not_found")


def test_lowering_a_limit_never_raises_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(aws_limits.API_GATEWAY_TIMEOUT_ENV, "2")
    assert aws_limits.lowered(aws_limits.API_GATEWAY_TIMEOUT_ENV, 29) == 2
    monkeypatch.setenv(aws_limits.API_GATEWAY_TIMEOUT_ENV, "30")
    with pytest.raises(ValueError, match="must be in"):
        aws_limits.lowered(aws_limits.API_GATEWAY_TIMEOUT_ENV, 29)
