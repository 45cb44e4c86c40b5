"""The heartbeat loop: report disk use and load, pick up pulled work (warm, evict),
and re-register when the control plane no longer accepts this node (401/404, 410
dead, or an answer that says dead). A drained node (410 ``node_drained``, or an
answer that says drained) leaves: the loop stops the edge, which must not come back
under that identity. Serving never waits on it: when the control plane is
down the loop just backs off and retries, and a re-registration is followed by a
jittered pause like any other beat, growing while the control plane keeps
rejecting the node, never a tight loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fsnode_core.errors import (
    NODE_DRAINED_REASON,
    Forbidden,
    FsnodeError,
    Gone,
    NotFound,
    Unauthorized,
    Unavailable,
)
from fsnode_core.ids import check_id
from fsnode_core.models import NODE_ACTIVE, NODE_DEAD, NODE_DRAINED, NODE_DRAINING

from edge_node.background import TaskSet, wait_any
from edge_node.cache import ChunkCache
from edge_node.control_plane import ControlPlaneClient, is_drained
from edge_node.manifests import ManifestStore
from edge_node.metrics import EdgeMetrics
from edge_node.shares import ShareKeys

log = logging.getLogger(__name__)

MIN_INTERVAL = 1.0
MAX_BACKOFF = 60.0


@dataclass(frozen=True, slots=True)
class WorkFaults:
    """Faults injected into pulled work, so tests can drive the workflows' retry paths
    with a real edge. Never set in production; read once, when the loop is built.

    ``FSNODE_FAULT_WARM_FAILURES=N``: the first N warm attempts of each chunk report
    failure (counted per chunk, so concurrent work cannot use up another chunk's share).
    """

    warm_failures: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkFaults:
        source = os.environ if env is None else env
        raw = source.get("FSNODE_FAULT_WARM_FAILURES", "").strip() or "0"
        try:
            count = int(raw)
        except ValueError as exc:
            raise ValueError(f"FSNODE_FAULT_WARM_FAILURES must be an integer, got {raw!r}") from exc
        if count < 0:
            raise ValueError("FSNODE_FAULT_WARM_FAILURES must not be negative")
        return cls(warm_failures=count)


class HeartbeatLoop:
    def __init__(
        self,
        *,
        client: ControlPlaneClient,
        cache: ChunkCache,
        manifests: ManifestStore,
        keys: ShareKeys,
        metrics: EdgeMetrics,
        capacity_bytes: int,
        interval: float,
        reregister: Callable[[str | None], Awaitable[object]],
        faults: WorkFaults | None = None,
        pause: Callable[[asyncio.Event, float], Awaitable[None]] | None = None,
        on_forget: Callable[[str], None] | None = None,
        on_keys: Callable[[dict[str, str]], None] | None = None,
        on_answer: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        on_drained: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._cache = cache
        self._manifests = manifests
        self._keys = keys
        self._metrics = metrics
        self._capacity = capacity_bytes
        self.interval = max(MIN_INTERVAL, interval)
        self._reregister = reregister
        self._work = TaskSet()
        self._working: set[str] = set()
        self._faults = faults if faults is not None else WorkFaults.from_env()
        self._warm_attempts: Counter[tuple[str, str, int]] = Counter()
        self._pause = pause or _pause
        # Told of manifests dropped and share keys changed (the workers must hear).
        self._on_forget = on_forget or (lambda _file_id: None)
        self._on_keys = on_keys or (lambda _keys: None)
        # Told every answer (the public certificate's serial: edge_node.public_tls).
        self._on_answer = on_answer
        # Told once the control plane says this node is drained, before the edge stops.
        self._on_drained = on_drained
        self.status = "unknown"
        # Set once the control plane places this node (it proved its endpoint).
        self.placed = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Beat until ``stop`` is set; failures back off up to a minute.

        A rejected beat re-registers, then waits a jittered interval before the next
        beat; rejections in a row (each followed by a re-registration, or a failed
        attempt at one) back off like failures, so a control plane that keeps
        answering with a node it rejects cannot drive a tight loop.
        """
        failures = 0  # beats in a row that the control plane could not answer
        rejections = 0  # beats in a row that it answered "not this node"
        while not stop.is_set():
            node_id = self._client.node_id  # the identity this beat speaks for
            try:
                await self.beat_once()
                failures = rejections = 0
                delay = self.interval
            except (Unauthorized, NotFound, Forbidden, Gone) as exc:
                if is_drained(exc):
                    await self._leave(stop, exc.message)
                    break
                # Gone: declared dead (a pending or draining node may still beat).
                rejections += 1
                log.warning(
                    "control plane no longer accepts this node (%s); registering again", exc.message
                )
                try:
                    await self._reregister(node_id)
                except FsnodeError as exc:
                    log.warning("re-registration failed: %s", exc.message)
                delay = _backoff(rejections, self.interval)
            except FsnodeError as exc:
                failures += 1
                delay = _backoff(failures, self.interval)
                log.warning("heartbeat failed (%s); next try in %.1fs", exc.message, delay)
            await self._pause(stop, delay)
        await self._work.close()

    async def _leave(self, stop: asyncio.Event, why: str) -> None:
        log.warning("this node was drained (%s): leaving the fleet, the edge stops", why)
        self.status = NODE_DRAINED
        if self._on_drained is not None:
            await self._on_drained()
        stop.set()

    async def beat_once(self) -> dict[str, Any]:
        await self._cache.refresh()
        body = {
            "used_bytes": self._cache.used_bytes,
            "free_bytes": self._cache.free_bytes,
            "capacity_bytes": self._capacity,
            # Load: file requests in flight on every worker plus chunk fills.
            "load": float(await self._cache.node_load() + self._cache.inflight),
            "hot_files": await self._cache.hot_files(),
        }
        answer = await self._client.heartbeat(body)
        self.status = str(answer.get("status") or self.status)
        if self.status in PLACED_STATUSES:
            if self._on_answer is not None:
                await self._on_answer(answer)
            self.placed.set()
        if self.status == NODE_DEAD:
            # The control plane refuses a dead node's beat (410 node_dead); an answer that
            # says so plainly means the same, and its work is not for us.
            raise NotFound("the control plane has declared this node dead")
        if self.status == NODE_DRAINED:
            raise Gone("the control plane has drained this node", reason=NODE_DRAINED_REASON)
        if answer.get("heartbeat_interval"):
            self.interval = max(MIN_INTERVAL, float(answer["heartbeat_interval"]))
        keys = answer.get("share_public_keys")
        if isinstance(keys, dict) and keys:
            try:
                pems = {str(k): str(v) for k, v in keys.items()}
                self._keys.update(pems)
                self._on_keys(pems)
            except ValueError as exc:
                log.error("ignoring bad share keys from the control plane: %s", exc)
        for item in answer.get("work") or []:
            if not isinstance(item, dict):
                continue
            work_id = str(item.get("work_id") or "")
            # A long task can still be running when the next beat repeats it.
            if not work_id or work_id in self._working:
                continue
            self._working.add(work_id)
            self._work.spawn(self._do_work(work_id, item), name=f"work-{work_id}")
        return answer

    async def _do_work(self, work_id: str, item: dict[str, Any]) -> None:
        try:
            result = await self.perform(item)
        except FsnodeError as exc:
            result = {"ok": False, "error": {"code": exc.code, "message": exc.message}}
        except (KeyError, TypeError, ValueError) as exc:
            result = {"ok": False, "error": {"code": "invalid_input", "message": str(exc)}}
        try:
            await self._client.report_work(work_id, result)
        except FsnodeError as exc:
            # The task token times out and Step Functions retries or moves on.
            log.warning("could not report work %s: %s", work_id, exc.message)
        finally:
            self._working.discard(work_id)

    async def perform(self, item: dict[str, Any]) -> dict[str, Any]:
        """Do one work item; the answer is what gets reported."""
        kind = item.get("kind")
        file_id = check_id(str(item.get("file_id", "")), "file_id")
        if kind == "warm":
            # A batch of chunks (``chunks``), reported with one SHA-256 per chunk in order.
            version = str(item["version"])
            indices = [int(i) for i in item.get("chunks") or [item["chunk_index"]]]
            self._inject_warm_fault(file_id, version, indices)
            manifest = await self._manifests.get(file_id, version)
            digests = []
            for index in indices:
                if not 0 <= index < len(manifest.chunks):
                    raise ValueError(f"chunk {index} is outside the file")
                # An imported chunk's hash may be one this edge has just learned and
                # recorded: report what the cache verified, not the manifest in hand.
                verified = await self._cache.ensure(manifest, index)
                digests.append(verified or manifest.chunks[index].sha256)
            return {"ok": True, "sha256": digests}
        if kind == "evict":
            raw_version = item.get("version")
            removed = await self._cache.evict_file(
                file_id, str(raw_version) if raw_version is not None else None
            )
            cached = self._manifests.peek(file_id)
            # The collected version's manifest is stale: refetch it (410) rather than
            # serve the file from an origin object that is already deleted.
            if raw_version is None or cached is None or cached.version == str(raw_version):
                self._manifests.forget(file_id)
                self._on_forget(file_id)
            return {"ok": True, "evicted_chunks": removed}
        raise ValueError(f"unknown work kind {kind!r}")

    def _inject_warm_fault(self, file_id: str, version: str, indices: list[int]) -> None:
        """Fail the warm while any of its chunks has failed fewer than N times (each
        chunk counts this attempt)."""
        if not self._faults.warm_failures:
            return
        attempt = 0
        for index in indices:
            key = (file_id, version, index)
            if self._warm_attempts[key] < self._faults.warm_failures:
                self._warm_attempts[key] += 1
                attempt = max(attempt, self._warm_attempts[key])
        if attempt:
            raise Unavailable("injected warm failure (FSNODE_FAULT_WARM_FAILURES)", attempt=attempt)


PLACED_STATUSES = (NODE_ACTIVE, NODE_DRAINING)
# How long start-up waits to be placed before it says it is ready anyway (and warns).
PLACED_TIMEOUT_SECONDS = 60.0


async def wait_placed(heartbeat: HeartbeatLoop, stop: asyncio.Event, endpoint: str) -> None:
    """Until the control plane places this node (or we stop, or a minute passes:
    then a warning, and start-up goes on)."""
    await wait_any(stop, heartbeat.placed, timeout=PLACED_TIMEOUT_SECONDS)
    if not heartbeat.placed.is_set() and not stop.is_set():
        log.warning(
            "not placed yet after %.0fs: is %s reachable from the control plane?",
            PLACED_TIMEOUT_SECONDS,
            endpoint,
        )


def _backoff(failures: int, interval: float) -> float:
    """Jittered: between half an interval and a ceiling that doubles per failure."""
    ceiling = min(MAX_BACKOFF, interval * 2 ** min(failures, 6))
    return random.uniform(interval / 2, max(interval, ceiling))


async def _pause(stop: asyncio.Event, delay: float) -> None:
    """Wait ``delay`` seconds, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)
