"""The edge's manifest store (edge_node.manifests): stale-while-revalidate.

A copy this process has checked serves at once, however old; a stale one starts one
background refresh per file (bounded in number); a refresh that finds the file gone
drops the copy; after a re-registration every copy is checked again before it serves.
The source here is a fake control plane that can stall until released.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fsnode_core.errors import FsnodeError, Gone, NotFound, Unauthorized, Unavailable
from fsnode_core.ids import new_id

from edge_node.manifests import ChunkInfo, Manifest, ManifestStore


def manifest(version: str = "1", file_id: str | None = None) -> Manifest:
    return Manifest(
        file_id=file_id or new_id(), version=version, size=10, content_type="video/mp4",
        etag='"e"', last_modified=1_700_000_000, chunk_size=10, bucket="b", key="k",
        status="ready", chunks=(ChunkInfo(0, 0, 10, "a" * 64),),
    )  # fmt: skip


class Source:
    """A control plane's manifest route: answers from a dict, or an error set per
    file; ``stall()`` holds every answer until ``release()``."""

    def __init__(self, *manifests: Manifest) -> None:
        self.manifests = {m.file_id: m for m in manifests}
        self.errors: dict[str, FsnodeError] = {}
        self.calls: list[str] = []
        self.open = asyncio.Event()
        self.open.set()

    def stall(self) -> None:
        self.open.clear()

    def release(self) -> None:
        self.open.set()

    async def fetch_manifest(self, file_id: str) -> Manifest:
        self.calls.append(file_id)
        await self.open.wait()
        if file_id in self.errors:
            raise self.errors[file_id]
        return self.manifests[file_id]


async def settle() -> None:
    """Let background refreshes that can finish, finish."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_stale_copy_serves_at_once_and_one_refresh_runs_behind_it(tmp_path: Path) -> None:
    first = manifest()
    source = Source(first)
    store = ManifestStore(source, tmp_path, fresh_seconds=0)  # every copy is stale
    assert await store.get(first.file_id, "1") == first
    source.stall()
    for _ in range(5):
        # No await: a stalled control plane cannot delay these.
        assert store.fresh(first.file_id, "1") == first
        assert await store.get(first.file_id, "1") == first
    await settle()
    assert source.calls == [first.file_id] * 2  # the cold fetch, then one refresh in flight
    source.manifests[first.file_id] = replace(first, content_type="text/plain")
    source.release()
    await settle()
    assert store.peek(first.file_id) == source.manifests[first.file_id]
    await store.close()


async def test_a_refresh_that_finds_the_file_deleted_stops_it_serving(tmp_path: Path) -> None:
    first = manifest()
    source = Source(first)
    store = ManifestStore(source, tmp_path, fresh_seconds=0)
    await store.get(first.file_id, "1")
    await store.flush()  # the disk copy is written behind the answer
    assert (tmp_path / "manifests" / f"{first.file_id}.json").exists()
    source.errors[first.file_id] = Gone("file was deleted")
    assert store.fresh(first.file_id, "1") == first  # served while the refresh asks
    await settle()
    assert store.fresh(first.file_id, "1") is None and store.peek(first.file_id) is None
    assert not (tmp_path / "manifests" / f"{first.file_id}.json").exists()
    with pytest.raises(Gone):
        await store.get(first.file_id, "1")
    await store.close()


async def test_a_new_version_seen_on_refresh_ends_the_old_share(tmp_path: Path) -> None:
    first = manifest()
    source = Source(first)
    store = ManifestStore(source, tmp_path, fresh_seconds=0)
    await store.get(first.file_id, "1")
    source.manifests[first.file_id] = replace(first, version="2")
    store.fresh(first.file_id, "1")
    await settle()
    assert store.fresh(first.file_id, "1") is None
    with pytest.raises(Gone):
        await store.get(first.file_id, "1")
    assert (await store.get(first.file_id, "2")).version == "2"
    await store.close()


async def test_a_failed_refresh_keeps_serving_and_waits_before_trying_again(
    tmp_path: Path,
) -> None:
    first = manifest()
    source = Source(first)
    store = ManifestStore(source, tmp_path, fresh_seconds=0, retry_seconds=3600)
    await store.get(first.file_id, "1")
    source.errors[first.file_id] = Unavailable("control plane down")
    store.fresh(first.file_id, "1")
    await settle()
    calls = len(source.calls)
    for _ in range(5):
        assert store.fresh(first.file_id, "1") == first
    await settle()
    assert len(source.calls) == calls  # no retry storm while it is down
    await store.close()


async def test_background_refreshes_are_bounded(tmp_path: Path) -> None:
    files = [manifest() for _ in range(4)]
    source = Source(*files)
    store = ManifestStore(source, tmp_path, fresh_seconds=0, max_refreshes=2)
    for item in files:
        await store.get(item.file_id, "1")
    source.stall()
    for item in files:
        assert store.fresh(item.file_id, "1") == item
    await settle()
    assert len(source.calls) == len(files) + 2
    source.release()
    await settle()
    await store.close()


async def test_after_a_reregistration_each_copy_is_checked_once_before_it_serves(
    tmp_path: Path,
) -> None:
    kept, deleted, unreachable = manifest(), manifest(), manifest()
    source = Source(kept, deleted, unreachable)
    store = ManifestStore(source, tmp_path, fresh_seconds=3600)
    for item in (kept, deleted, unreachable):
        await store.get(item.file_id, "1")
    store.distrust_all()
    source.errors[deleted.file_id] = Gone("file was deleted")
    source.errors[unreachable.file_id] = Unauthorized("credential is not valid for this node")
    for item in (kept, deleted, unreachable):
        assert store.fresh(item.file_id, "1") is None  # get() must ask
    calls = len(source.calls)
    assert await store.get(kept.file_id, "1") == kept
    with pytest.raises(Gone):
        await store.get(deleted.file_id, "1")
    # The control plane cannot answer for this file: its copy serves, and from then
    # on without waiting (background refreshes keep asking).
    assert await store.get(unreachable.file_id, "1") == unreachable
    assert len(source.calls) == calls + 3
    assert store.fresh(kept.file_id, "1") == kept
    assert store.fresh(unreachable.file_id, "1") == unreachable
    await store.close()


async def test_a_lookup_in_flight_when_the_copy_is_evicted_does_not_store_it(
    tmp_path: Path,
) -> None:
    first = manifest()
    source = Source(first)
    store = ManifestStore(source, tmp_path, fresh_seconds=0)
    await store.get(first.file_id, "1")
    source.stall()
    store.fresh(first.file_id, "1")  # a refresh is in flight
    await settle()
    store.forget(first.file_id)  # evict work for a deleted version
    source.release()
    await settle()
    await store.flush()  # a write behind the first answer may still be running
    assert store.peek(first.file_id) is None
    assert not (tmp_path / "manifests" / f"{first.file_id}.json").exists()
    await store.close()


async def test_a_never_seen_file_waits_and_a_node_being_replaced_is_a_503(tmp_path: Path) -> None:
    file_id = new_id()
    source = Source()
    store = ManifestStore(source, tmp_path)
    source.errors[file_id] = NotFound("no such file")
    with pytest.raises(NotFound):
        await store.get(file_id, "1")
    source.errors[file_id] = Unauthorized("credential is not valid for this node")
    with pytest.raises(Unavailable):
        await store.get(file_id, "1")
    await store.close()


class Blocked:
    """Wraps a store's disk method so each call waits (in its thread) until released."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method
        self.gate = threading.Event()
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        self.gate.wait(30)
        return self.method(*args)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


async def test_a_cold_lookup_asks_first_and_never_waits_for_the_disk_write(
    tmp_path: Path,
) -> None:
    first = manifest()
    source = Source(first)
    store = ManifestStore(source, tmp_path)
    reads = Blocked(store._read_disk)
    writes = Blocked(store._write_disk)
    store._read_disk = reads  # type: ignore[method-assign]
    store._write_disk = writes  # type: ignore[method-assign]
    lookup = asyncio.create_task(store.get(first.file_id, "1"))
    # The request went out while the disk was still being searched for a copy.
    await until(lambda: source.calls == [first.file_id] and reads.calls == 1)
    reads.gate.set()
    assert await lookup == first
    # Answered, and the disk copy is still being written behind it.
    path = tmp_path / "manifests" / f"{first.file_id}.json"
    await until(lambda: writes.calls == 1)
    assert not path.exists()
    writes.gate.set()
    await store.flush()
    assert Manifest.from_dict(json.loads(path.read_text())) == first
    await store.close()


async def test_a_copy_forgotten_while_being_written_leaves_nothing_on_disk(
    tmp_path: Path,
) -> None:
    first = manifest()
    store = ManifestStore(Source(first), tmp_path)
    writes = Blocked(store._write_disk)
    store._write_disk = writes  # type: ignore[method-assign]
    await store.get(first.file_id, "1")
    await until(lambda: writes.calls == 1)
    store.forget(first.file_id)  # an evict, while the thread is about to write
    writes.gate.set()
    await store.flush()
    assert not (tmp_path / "manifests" / f"{first.file_id}.json").exists()
    await store.close()


async def test_learned_hashes_reach_the_disk_by_close(tmp_path: Path) -> None:
    first = replace(manifest(), chunks=(ChunkInfo(0, 0, 10, None),))
    store = ManifestStore(Source(first), tmp_path)
    await store.get(first.file_id, "1")
    await store.learn_hash(first.file_id, "1", 0, "b" * 64)
    await store.close()
    down = Source()
    down.errors[first.file_id] = Unavailable("the control plane is down")
    reopened = ManifestStore(down, tmp_path)
    served = await reopened.get(first.file_id, "1")  # the disk copy (static stability)
    assert served.chunks[0].sha256 == "b" * 64
    await reopened.close()
