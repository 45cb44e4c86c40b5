"""Pulled work on the edge (``HeartbeatLoop.perform``): warm, evict, injected warm faults."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fsnode_core.errors import Unavailable

from edge_node.cache import ChunkCache
from edge_node.control_plane import ControlPlaneClient
from edge_node.heartbeat import HeartbeatLoop, WorkFaults
from edge_node.manifests import ManifestStore
from edge_node.metrics import EdgeMetrics
from edge_node.shares import ShareKeys

FILE = "a" * 32


class FakeCache:
    def __init__(self) -> None:
        self.warmed: list[tuple[str, int]] = []
        self.evicted: list[tuple[str, str | None]] = []

    async def ensure(self, manifest: Any, index: int) -> str:
        self.warmed.append((manifest.version, index))
        return f"verified-{index}"

    async def evict_file(self, file_id: str, version: str | None = None) -> int:
        self.evicted.append((file_id, version))
        return 2


class FakeManifests:
    def __init__(self, cached_version: str | None) -> None:
        self.cached = (
            SimpleNamespace(version=cached_version, chunks=[SimpleNamespace(sha256=None)] * 3)
            if cached_version
            else None
        )
        self.forgotten: list[str] = []

    async def get(self, file_id: str, version: str) -> Any:
        return SimpleNamespace(version=version, chunks=[SimpleNamespace(sha256=None)] * 3)

    def peek(self, file_id: str) -> Any:
        return self.cached

    def forget(self, file_id: str) -> None:
        self.forgotten.append(file_id)


def _loop(cache: FakeCache, manifests: FakeManifests, faults: WorkFaults) -> HeartbeatLoop:
    # Fakes for what ``perform`` touches; the client, keys, metrics and re-registration
    # are never reached.
    return HeartbeatLoop(
        client=cast(ControlPlaneClient, None),
        cache=cast(ChunkCache, cache),
        manifests=cast(ManifestStore, manifests),
        keys=cast(ShareKeys, None),
        metrics=cast(EdgeMetrics, None),
        capacity_bytes=1,
        interval=1.0,
        reregister=cast(Callable[[str | None], Awaitable[object]], None),
        faults=faults,
    )


def _warm(index: int, chunks: list[int] | None = None) -> dict[str, Any]:
    return {
        "kind": "warm",
        "file_id": FILE,
        "version": "v1",
        "chunk_index": index,
        "chunks": chunks or [index],
    }


def test_injected_warm_failures_count_per_chunk() -> None:
    cache = FakeCache()
    loop = _loop(cache, FakeManifests(None), WorkFaults(warm_failures=2))

    async def run() -> list[Any]:
        outcomes: list[Any] = []
        for index in (0, 1, 0, 0, 1, 1):
            try:
                outcomes.append((await loop.perform(_warm(index)))["sha256"][0])
            except Unavailable:
                outcomes.append("failed")
        return outcomes

    # Chunk 1's failures are its own: chunk 0's attempts do not use them up.
    assert asyncio.run(run()) == [
        "failed",
        "failed",
        "failed",
        "verified-0",
        "failed",
        "verified-1",
    ]
    assert cache.warmed == [("v1", 0), ("v1", 1)]


def test_warm_reports_the_hash_the_cache_verified() -> None:
    loop = _loop(FakeCache(), FakeManifests(None), WorkFaults())
    assert asyncio.run(loop.perform(_warm(2))) == {"ok": True, "sha256": ["verified-2"]}


def test_a_batch_warm_reports_one_hash_per_chunk_in_order() -> None:
    cache = FakeCache()
    loop = _loop(cache, FakeManifests(None), WorkFaults())
    answer = asyncio.run(loop.perform(_warm(2, [2, 0, 1])))
    assert answer == {"ok": True, "sha256": ["verified-2", "verified-0", "verified-1"]}
    assert cache.warmed == [("v1", 2), ("v1", 0), ("v1", 1)]


def test_an_injected_failure_fails_the_batch_and_counts_for_each_chunk() -> None:
    loop = _loop(FakeCache(), FakeManifests(None), WorkFaults(warm_failures=1))

    async def run() -> list[Any]:
        outcomes: list[Any] = []
        for _ in range(2):
            try:
                outcomes.append((await loop.perform(_warm(0, [0, 1])))["sha256"])
            except Unavailable:
                outcomes.append("failed")
        return outcomes

    # Each chunk had its one failure in the first attempt: the second succeeds.
    assert asyncio.run(run()) == ["failed", ["verified-0", "verified-1"]]


@pytest.mark.parametrize(("cached", "forgotten"), [("v1", [FILE]), (None, [FILE]), ("v2", [])])
def test_evict_drops_the_collected_versions_manifest(
    cached: str | None, forgotten: list[str]
) -> None:
    cache, manifests = FakeCache(), FakeManifests(cached)
    loop = _loop(cache, manifests, WorkFaults())

    answer = asyncio.run(
        loop.perform({"kind": "evict", "file_id": FILE, "version": "v1", "chunk_index": -1})
    )

    assert answer == {"ok": True, "evicted_chunks": 2}
    assert cache.evicted == [(FILE, "v1")]
    # A newer version's manifest is still good; the collected one's would serve a 404 origin.
    assert manifests.forgotten == forgotten


@pytest.mark.parametrize("raw", ["x", "-1"])
def test_fault_setting_is_checked(raw: str) -> None:
    with pytest.raises(ValueError, match="FSNODE_FAULT_WARM_FAILURES"):
        WorkFaults.from_env({"FSNODE_FAULT_WARM_FAILURES": raw})
    assert WorkFaults.from_env({}) == WorkFaults(warm_failures=0)
