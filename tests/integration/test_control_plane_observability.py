"""Powertools on every path: correlation ids, metrics flushed per call, bugs logged.

Routes go through ``http.normalize`` (middleware) and ``http.json_errors`` (per view);
Lambda functions and schedules through ``observability.observe_background``.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from chalice import Response

WEB_PAGES = {
    "/",
    "/player",
    "/web/app.js",
    "/web/player.js",
    "/web/folders.js",
    "/web/hls.min.js",
    "/web/dash.mediaplayer.min.js",
    "/web/style.css",
    "/web/config.json",
}


@pytest.fixture()
def service_log() -> Iterator[io.StringIO]:
    """The control plane's log records, formatted as Powertools formats them."""
    from chalicelib.observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    service = logging.getLogger("fsnode-control-plane")
    service.addHandler(handler)
    try:
        yield stream
    finally:
        service.removeHandler(handler)


def _metric_names(printed: str) -> set[str]:
    """Metric names in the EMF lines Powertools printed."""
    names: set[str] = set()
    for line in printed.splitlines():
        if '"_aws"' in line:
            for directive in json.loads(line)["_aws"]["CloudWatchMetrics"]:
                names |= {metric["Name"] for metric in directive["Metrics"]}
    return names


def test_an_unexpected_error_is_logged_with_its_correlation_id_and_answered_as_json(
    cp_api: Any,
    capsys: pytest.CaptureFixture[str],
    service_log: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chalicelib import nodes

    def broken() -> dict[str, Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(nodes, "cluster", broken)
    capsys.readouterr()
    answer = cp_api.call("GET", "/cluster")
    assert answer.status_code == 500
    assert json.loads(answer.body) == {
        "error": {"code": "internal", "message": "an internal error occurred"}
    }
    printed = capsys.readouterr().out
    logged = [
        record
        for record in map(json.loads, service_log.getvalue().splitlines())
        if record["message"] == "unhandled error"
    ]
    assert len(logged) == 1 and logged[0]["correlation_id"], logged
    assert "RuntimeError: a bug" in logged[0]["exception"]
    assert logged[0]["route"] == "/cluster" and logged[0]["method"] == "GET"
    assert "ServerError" in _metric_names(printed)


def test_refused_requests_are_counted(cp_api: Any, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert cp_api.call("GET", f"/files/{'0' * 32}").status_code == 404
    assert _metric_names(capsys.readouterr().out) == {"RequestRefused"}


def test_every_route_but_the_static_pages_answers_errors_through_json_errors(cp_app: Any) -> None:
    for path, methods in cp_app.app.routes.items():
        for method, entry in methods.items():
            if path in WEB_PAGES:
                continue
            # functools.wraps in json_errors keeps the view underneath as __wrapped__.
            assert hasattr(entry.view_function, "__wrapped__"), (method, path)


def test_the_api_gateway_request_id_is_the_correlation_id() -> None:
    from chalicelib.http import normalize
    from chalicelib.observability import logger

    event = SimpleNamespace(
        method="GET", context={"requestId": "apigw-req-1", "resourcePath": "/cluster"}
    )
    seen: list[str | None] = []

    def respond(_: Any) -> Response:
        seen.append(logger.get_correlation_id())
        return Response(body={}, status_code=200)

    assert normalize(event, respond).status_code == 200
    assert seen == ["apigw-req-1"]


def test_lambda_functions_get_a_correlation_id_and_flush_their_metrics(
    cp_app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from chalicelib.observability import logger, metrics, observe_background

    assert observe_background in cp_app.app._get_middleware_handlers("pure_lambda")
    assert observe_background in cp_app.app._get_middleware_handlers("scheduled")
    capsys.readouterr()
    seen: list[str | None] = []

    def handler(_: Any) -> dict[str, bool]:
        seen.append(logger.get_correlation_id())
        metrics.add_metric(name="ProbeRan", unit="Count", value=1)
        return {"ok": True}

    event = SimpleNamespace(event={}, context=SimpleNamespace(aws_request_id="lambda-req-7"))
    assert observe_background(event, handler) == {"ok": True}
    assert seen == ["lambda-req-7"]
    assert "ProbeRan" in _metric_names(capsys.readouterr().out)


def test_prune_sends_the_dead_nodes_gauge_on_every_run(
    cp_env: Any, cp_app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The DeadNodes alarm (infra/constructs/monitoring.py) watches a value every run
    sends, 0 included, not an event that only a run marking nodes dead would send."""
    from chalicelib import aws, prune

    from infra.constructs.monitoring import DEAD_NODES

    aws.reset()
    capsys.readouterr()
    prune.run()
    sent = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    values = [line[DEAD_NODES] for line in sent if DEAD_NODES in line]
    assert prune.METRIC_DEAD_NODES == DEAD_NODES
    # One value per run (Powertools writes a metric's values as a list).
    assert len(values) == 1 and len(values[0]) == 1 and values[0][0] >= 0
