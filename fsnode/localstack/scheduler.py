"""Run the Chalice app's scheduled functions (``@app.schedule``) on one machine.

In AWS, EventBridge rules invoke them; ``chalice local`` does not, so the local
stack's control-plane process runs them on their rate. A shorter interval can be
forced for tests, where a one-minute prune would make every fault test slow.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from fsnode.localstack.lambda_dispatch import LambdaContext

log = logging.getLogger(__name__)
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float | None:
    """Seconds between runs for a ``rate(...)`` expression; None for cron expressions."""
    match = _RATE.fullmatch(expression.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


def scheduled_functions(module: ModuleType) -> list[tuple[str, Callable[..., Any], str]]:
    """``(name, handler, expression)`` for every ``@app.schedule`` in the Chalice app."""
    from chalice.app import ScheduledEventConfig

    found = []
    for source in module.app.event_sources:
        if isinstance(source, ScheduledEventConfig):
            expression = source.schedule_expression
            text = expression if isinstance(expression, str) else expression.to_string()
            attr = source.handler_string.rpartition(".")[2]
            found.append((source.name, getattr(module, attr), text))
    return found


class Scheduler:
    """One daemon thread per scheduled function, stopped together."""

    def __init__(
        self,
        module: ModuleType,
        override_seconds: float | None = None,
        run_as: Callable[[str], contextlib.AbstractContextManager[None]] | None = None,
    ) -> None:
        self._module = module
        self._override = override_seconds
        # Each scheduled function signs its AWS calls as its own role (the local stack).
        self._run_as = run_as or (lambda _name: contextlib.nullcontext())
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for name, handler, expression in scheduled_functions(self._module):
            interval = self._override or rate_seconds(expression)
            if interval is None:
                log.warning("schedule %s (%s) is not a rate; not run locally", name, expression)
                continue
            thread = threading.Thread(
                target=self._loop, args=(name, handler, interval), daemon=True, name=name
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _loop(self, name: str, handler: Callable[..., Any], interval: float) -> None:
        while not self._stop.wait(interval):
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "000000000000",
                "region": "local",
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "resources": [f"arn:aws:events:local:000000000000:rule/{name}"],
                "detail": {},
            }
            try:
                with self._run_as(name):
                    handler(event, LambdaContext(name, 512, 60))
            except Exception:
                # A failed run is retried at the next tick, as EventBridge would.
                log.exception("scheduled function %s failed", name)
