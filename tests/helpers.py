"""Helpers every test package shares: waiting on a condition, never on the clock alone.

A wait polls its condition and fails, naming what it waited for, once ``timeout``
seconds pass: the limit only keeps a broken run from hanging, it asserts no speed.
"""

from __future__ import annotations

import abc
import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import requests
from fsnode_core.published import Head

T = TypeVar("T")


def _attempts(what: str, timeout: float) -> Iterator[None]:
    """Yield once per look at the condition; fail, naming ``what``, once ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        yield
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} ({timeout:g} s)")


def wait_for(
    check: Callable[[], T | None], what: str, timeout: float = 60.0, interval: float = 0.05
) -> T:
    """Poll ``check`` until it returns something truthy, and return that."""
    for _ in _attempts(what, timeout):
        if result := check():
            return result
        time.sleep(interval)
    raise AssertionError("unreachable")


async def wait_for_async(
    check: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.005
) -> T:
    """``wait_for`` inside an event loop: the loop runs the tasks the check waits on."""
    for _ in _attempts(what, timeout):
        if result := check():
            return result
        await asyncio.sleep(interval)
    raise AssertionError("unreachable")


def finished_execution(
    sfn: Any, arn: str, timeout: float = 120.0, pump: Callable[[], None] | None = None
) -> dict[str, Any]:
    """``describe_execution`` of a Step Functions execution once it is no longer
    RUNNING; ``pump`` runs before each look (it may deliver what the execution awaits)."""

    def ended() -> dict[str, Any] | None:
        if pump is not None:
            pump()
        described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        return None if described["status"] == "RUNNING" else described

    return wait_for(ended, f"execution {arn} to end", timeout, interval=0.2)


def execution_history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    """Every event of a Step Functions execution, all pages."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def put_parts(
    parts: list[dict[str, Any]], data: bytes, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """PUT each part of ``data`` to its presigned URL, as a client does; the parts'
    numbers and ETags, for ``complete``."""
    done = []
    for part in parts:
        body = data[part["offset"] : part["offset"] + part["length"]]
        put = requests.put(part["url"], data=body, headers=part["headers"], timeout=timeout)
        assert put.status_code == 200, put.text
        done.append({"part_number": part["part_number"], "etag": put.headers["ETag"]})
    return done


def https_session(ca_file: Path | str) -> requests.Session:
    """A requests session that trusts ``ca_file`` (a test CA) and nothing from the
    environment (REQUESTS_CA_BUNDLE would override ``verify``): real certificate
    checks, IP SANs included."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_file)
    return session


class LoopThread(abc.ABC):
    """A server a synchronous test drives: its own asyncio event loop in a daemon thread.
    ``start`` runs the loop and ``_start`` on it; ``stop`` runs ``_stop`` on it, then
    ends and closes the loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def start(self) -> None:
        self._thread.start()
        self.call(self._start())

    def stop(self) -> None:
        if not self._thread.is_alive():  # never started: nothing runs on the loop
            self.loop.close()
            return
        try:
            self.call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.loop.close()

    @abc.abstractmethod
    async def _start(self) -> None:
        """Open what the server serves with (on the loop)."""

    @abc.abstractmethod
    async def _stop(self) -> None:
        """Close it (on the loop)."""


def a_head(file_id: str, seq: int) -> Head:
    """A ready head of ``file_id`` at ``seq`` (tests of the conditional head write)."""
    return Head(
        file_id=file_id,
        path=f"heads/{file_id}",
        status="ready",
        version="0" * 32,
        seq=seq,
        expires_at=None,
        updated_at=1,
    )
