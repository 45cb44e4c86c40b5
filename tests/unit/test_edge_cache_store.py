"""The chunk cache (edge_node.cache) on a real directory, with an in-memory origin:
fills, the index across restarts, eviction under its caps, leases and hits."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.unit.edge_cache_fakes import (
    CHUNK,
    DATA,
    Origin,
    config,
    make_manifest,
    opened,
    read_chunk,
)


async def test_fill_writes_atomically_and_serves_the_right_bytes(tmp_path: Path) -> None:
    origin = Origin(DATA)
    cache = await opened(tmp_path, origin)
    manifest = make_manifest(DATA)
    assert await read_chunk(cache, manifest, 3) == DATA[3000:]
    await cache.idle()
    assert await read_chunk(cache, manifest, 3) == DATA[3000:]
    assert origin.reads == 1
    assert cache.stats.hits == 1 and cache.stats.misses == 1
    path = cache.path_for((manifest.file_id, "1", 3))
    assert path.read_bytes() == DATA[3000:]
    assert list((tmp_path / "tmp").iterdir()) == []  # no temp files left behind
    assert cache.used_bytes == 500


async def test_index_is_rebuilt_after_restart(tmp_path: Path) -> None:
    origin = Origin(DATA)
    manifest = make_manifest(DATA)
    first = await opened(tmp_path, origin)
    for index in range(4):
        await first.ensure(manifest, index)
    await first.close()
    (tmp_path / "tmp" / "chunk.leftover").write_bytes(b"half a chunk")

    second = await opened(tmp_path, origin)
    assert second.chunk_count == 4
    assert second.used_bytes == len(DATA)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert b"".join([await read_chunk(second, manifest, i) for i in range(4)]) == DATA
    assert origin.reads == 4  # everything came from disk after the restart


async def test_lru_eviction_under_a_small_cap(tmp_path: Path) -> None:
    cache = await opened(tmp_path, Origin(DATA), config(2500))
    manifest = make_manifest(DATA)
    await cache.ensure(manifest, 0)
    await cache.ensure(manifest, 1)
    await read_chunk(cache, manifest, 0)  # 0 is now more recent than 1
    await cache.ensure(manifest, 2)
    await cache.idle()
    assert cache.contains(manifest, 0) and cache.contains(manifest, 2)
    assert not cache.contains(manifest, 1)
    assert not cache.path_for((manifest.file_id, "1", 1)).exists()
    assert cache.stats.evictions == 1
    assert cache.used_bytes == 2000 <= cache.max_bytes


async def test_watermarks_evict_down_to_the_low_mark(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40  # ten chunks
    cache = await opened(tmp_path, Origin(data), config(10_000, high_water=0.6, low_water=0.3))
    manifest = make_manifest(data)
    for index in range(7):
        await cache.ensure(manifest, index)
    await cache.idle()
    # 7000 > 60% of 10000: the background pass took it to 30%, oldest first.
    assert cache.used_bytes <= 3000
    assert cache.contains(manifest, 6) and not cache.contains(manifest, 0)
    assert cache.stats.evictions >= 4


async def test_a_burst_of_misses_never_grows_past_the_cap(tmp_path: Path) -> None:
    data = bytes(range(256)) * 80  # twenty chunks
    origin = Origin(data, delay=0.02)
    cache = await opened(tmp_path, origin, config(2500))
    manifest = make_manifest(data)
    peak = 0
    real_read = origin.read_into

    def on_disk() -> int:  # the shared index's totals, read now
        totals = cache._index.totals()
        return totals.used + totals.reserved

    async def watching(*args: Any, **kwargs: Any) -> None:
        nonlocal peak
        peak = max(peak, on_disk())
        await real_read(*args, **kwargs)
        peak = max(peak, on_disk())

    origin.read_into = watching  # type: ignore[method-assign]
    results = await asyncio.gather(*(read_chunk(cache, manifest, i) for i in range(20)))
    assert results == [data[i * CHUNK : (i + 1) * CHUNK] for i in range(20)]
    await cache.idle()
    assert peak <= 2500
    assert cache.used_bytes <= 2500
    assert cache.stats.not_stored >= 1  # served, but no room to keep


async def test_the_free_space_floor_is_kept(tmp_path: Path) -> None:
    # A floor of 99.99% of the real filesystem: statvfs says there is never room.
    cache = await opened(tmp_path, Origin(DATA), config(10_000, min_free_ratio=0.9999))
    manifest = make_manifest(DATA)
    assert await read_chunk(cache, manifest, 0) == DATA[:CHUNK]
    await cache.idle()
    assert cache.used_bytes == 0 and cache.free_bytes == 0
    assert cache.stats.not_stored == 1


async def test_pinned_chunks_are_not_evicted(tmp_path: Path) -> None:
    cache = await opened(tmp_path, Origin(DATA), config(2500))
    manifest = make_manifest(DATA)
    await cache.ensure(manifest, 0)
    async with cache.lease(manifest, 0) as pinned:
        await cache.ensure(manifest, 1)
        await cache.ensure(manifest, 2)  # must evict 1, the LRU unpinned chunk
        assert cache.contains(manifest, 0)
        assert not cache.contains(manifest, 1)
        assert b"".join([bytes(b) async for b in pinned.blocks(0, CHUNK)]) == DATA[:CHUNK]


async def test_explicit_eviction_does_not_break_an_open_lease(tmp_path: Path) -> None:
    cache = await opened(tmp_path, Origin(DATA))
    manifest = make_manifest(DATA)
    await cache.ensure(manifest, 1)
    async with cache.lease(manifest, 1) as lease:
        assert await cache.evict_file(manifest.file_id) == 1
        await cache.idle()
        assert cache.used_bytes == 0
        got = b"".join([bytes(b) async for b in lease.blocks(0, CHUNK)])
        assert got == DATA[CHUNK : 2 * CHUNK]


async def test_a_new_version_is_a_new_cache_key(tmp_path: Path) -> None:
    new_data = bytes(reversed(DATA))
    cache = await opened(tmp_path, Origin(DATA))
    old = make_manifest(DATA, version="1")
    await cache.ensure(old, 0)
    cache_new = await opened(tmp_path, Origin(new_data))
    new = make_manifest(new_data, version="2", file_id=old.file_id)
    assert await read_chunk(cache_new, new, 0) == new_data[:CHUNK]


async def test_a_hit_is_leased_without_waiting_and_a_miss_starts_nothing(tmp_path: Path) -> None:
    origin = Origin(DATA)
    cache = await opened(tmp_path, origin)
    manifest = make_manifest(DATA)
    assert cache.hit(manifest, 1) is None
    assert cache.inflight == 0 and origin.reads == 0  # hit() never fills
    await read_chunk(cache, manifest, 0)
    await read_chunk(cache, manifest, 1)
    await cache.idle()
    hits = cache.stats.hits
    for index in (1, 0, 1):
        lease = cache.hit(manifest, index)
        assert lease is not None
        try:
            block = lease.now(10, 500)  # small enough for one write: no generator
            assert block is not None and bytes(block) == DATA[index * CHUNK + 10 :][:500]
        finally:
            cache.release(lease)
    assert cache.stats.hits == hits + 3
    with pytest.raises(ValueError):
        cache.hit(manifest, 4)
