"""The local stack runs the Chalice app's schedules, which chalice local does not."""

from __future__ import annotations

import threading
import types
from typing import Any

import pytest
from chalice import Chalice, Rate

from fsnode.localstack.scheduler import Scheduler, rate_seconds, scheduled_functions


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
    ],
)
def test_rate_expressions(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


def test_cron_is_not_a_rate() -> None:
    assert rate_seconds("cron(0 12 * * ? *)") is None


def _module_with_schedules() -> tuple[types.ModuleType, threading.Event, list[dict[str, Any]]]:
    app = Chalice(app_name="scheduled")
    ran = threading.Event()
    events: list[dict[str, Any]] = []

    @app.schedule("rate(1 minute)")
    def prune(event: Any) -> None:
        events.append(event.to_dict())
        ran.set()

    @app.schedule(Rate(2, unit=Rate.HOURS))
    def report(event: Any) -> None:
        # A failing scheduled function must not stop the others.
        raise RuntimeError("report fails")

    module = types.ModuleType("fake_app")
    module.app = app  # type: ignore[attr-defined]
    module.prune = prune  # type: ignore[attr-defined]
    module.report = report  # type: ignore[attr-defined]
    return module, ran, events


def test_scheduled_functions_are_found_with_their_expressions() -> None:
    module, _, _ = _module_with_schedules()

    found = {name: expression for name, _, expression in scheduled_functions(module)}

    assert found == {"prune": "rate(1 minute)", "report": "rate(2 hours)"}


def test_scheduler_invokes_the_handler_with_a_scheduled_event() -> None:
    module, ran, events = _module_with_schedules()
    scheduler = Scheduler(module, override_seconds=0.05)
    scheduler.start()
    try:
        assert ran.wait(10)
    finally:
        scheduler.stop()
    assert events[0]["detail-type"] == "Scheduled Event"
    assert events[0]["source"] == "aws.events"
