"""How the chunk cache fills a chunk: one origin read shared by every reader, ranged
parts in parallel, a seek served from a small GET at its offset first, bytes handed
out before the chunk is complete (but never the last one before the check)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from fsnode_core.errors import IntegrityError

from tests.unit.edge_cache_fakes import (
    CHUNK,
    DATA,
    Origin,
    config,
    make_manifest,
    opened,
    read_chunk,
)


async def test_concurrent_misses_share_one_origin_read(tmp_path: Path) -> None:
    origin = Origin(DATA, delay=0.05)
    cache = await opened(tmp_path, origin)
    manifest = make_manifest(DATA)
    results = await asyncio.gather(*(read_chunk(cache, manifest, 2) for _ in range(50)))
    assert all(r == DATA[2000:3000] for r in results)
    assert origin.reads == 1


async def test_a_chunk_is_fetched_as_concurrent_ranged_parts(tmp_path: Path) -> None:
    origin = Origin(DATA)
    cache = await opened(tmp_path, origin, config(part_bytes=250, max_parts=4))
    manifest = make_manifest(DATA)
    assert await read_chunk(cache, manifest, 1) == DATA[CHUNK : 2 * CHUNK]
    assert sorted(origin.calls) == [(1000, 250), (1250, 250), (1500, 250), (1750, 250)]


class HeadFirstOrigin(Origin):
    """Holds every read that does not start at ``head`` (an absolute offset) until
    ``others`` is set, and the one that does until ``head_go`` is; ``asked`` lists
    every read as it is asked for (``calls``: as it passes its hold)."""

    def __init__(self, data: bytes, head: int, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.head = head
        self.others = asyncio.Event()
        self.head_go = asyncio.Event()
        self.head_go.set()
        self.asked: list[int] = []

    async def read_into(self, bucket: str, key: str, offset: int, *rest: Any, **pins: Any) -> None:
        self.asked.append(offset)
        await (self.head_go if offset == self.head else self.others).wait()
        await super().read_into(bucket, key, offset, *rest, **pins)


SEEK = config(part_bytes=250, max_parts=4, first_part_bytes=100)
# Chunk 1 read from offset 600: first [600, 700), then the even parts without it,
# the bytes after the first part before the prefix.
SEEK_PARTS = [(1600, 100), (1700, 50), (1750, 250), (1000, 250), (1250, 250), (1500, 100)]


async def guarded(step: Coroutine[Any, Any, Any]) -> Any:
    """Await ``step``, failing the test instead of hanging if it never finishes."""
    return await asyncio.wait_for(step, 30)


async def test_a_seek_into_a_cold_chunk_waits_only_for_a_small_get_at_its_offset(
    tmp_path: Path,
) -> None:
    origin = HeadFirstOrigin(DATA, head=1600)
    cache = await opened(tmp_path, origin, SEEK)
    manifest = make_manifest(DATA)
    lease = await cache.acquire(manifest, 1, offset=600)
    # Every other part is held at the origin: the reader's bytes came from one GET.
    await guarded(lease.ready(600, 100))
    blocks = lease.blocks(600, 100)
    assert bytes(await guarded(anext(blocks))) == DATA[1600:1699]  # the last byte is held back
    assert origin.calls == [(1600, 100)] and not cache.contains(manifest, 1)
    origin.others.set()
    assert b"".join([bytes(b) async for b in blocks]) == DATA[1699:1700]
    cache.release(lease)
    await cache.idle()
    # The whole chunk was fetched once, verified and kept.
    assert origin.calls[0] == (1600, 100)
    assert sorted(origin.calls) == sorted(SEEK_PARTS)
    assert cache.contains(manifest, 1) and cache.stats.fills == 1
    assert await read_chunk(cache, manifest, 1) == DATA[CHUNK : 2 * CHUNK]


async def test_a_short_read_asks_first_for_no_more_than_it_reads(tmp_path: Path) -> None:
    origin = Origin(DATA)
    cfg = config(part_bytes=250, max_parts=4, first_part_bytes=100, min_first_part_bytes=30)
    cache = await opened(tmp_path, origin, cfg)
    manifest = make_manifest(DATA)
    # 40 bytes wanted at 600: a first GET of 40; 10 wanted: of the minimum, 30.
    for index, wants, first in ((1, 40, (1600, 40)), (2, 10, (2600, 30)), (0, 500, (600, 100))):
        lease = await cache.acquire(manifest, index, offset=600, wants=wants)
        await guarded(lease.ready(600, wants))
        cache.release(lease)
        await cache.idle()
        assert first in origin.calls and cache.contains(manifest, index)
        assert next(call for call in origin.calls if call[0] // CHUNK == index) == first
    assert await read_chunk(cache, manifest, 1) == DATA[CHUNK : 2 * CHUNK]


async def test_the_rest_of_a_seek_fill_is_asked_for_once_the_first_bytes_arrive(
    tmp_path: Path,
) -> None:
    origin = HeadFirstOrigin(DATA, head=1600)
    origin.head_go.clear()
    origin.others.set()
    cache = await opened(tmp_path, origin, SEEK)
    manifest = make_manifest(DATA)
    lease = await cache.acquire(manifest, 1, offset=600)
    for _ in range(20):
        await asyncio.sleep(0)
    # The first part has not answered: nothing else competes with it at the origin.
    assert origin.asked == [1600]
    origin.head_go.set()
    assert b"".join([bytes(b) async for b in lease.blocks(600, 100)]) == DATA[1600:1700]
    cache.release(lease)
    await cache.idle()
    assert origin.asked[0] == 1600 and sorted(origin.calls) == sorted(SEEK_PARTS)
    assert cache.contains(manifest, 1)


async def test_a_seek_fill_still_checks_the_whole_chunk_before_the_last_byte(
    tmp_path: Path,
) -> None:
    # Both tries damage the prefix part (reads at the chunk's start), never the bytes
    # the reader asked for: only the SHA-256 over the whole chunk can tell.
    origin = HeadFirstOrigin(DATA, head=1600, corrupt_reads=2)
    origin.others.set()
    cache = await opened(tmp_path, origin, SEEK)
    manifest = make_manifest(DATA)
    lease = await cache.acquire(manifest, 1, offset=600)
    sent = b""
    with pytest.raises(IntegrityError):
        async for block in lease.blocks(600, 100):
            sent += bytes(block)
    cache.release(lease)
    assert sent == DATA[1600:1699]
    await cache.idle()
    assert not cache.contains(manifest, 1) and cache.used_bytes == 0
    # The second try kept the reader's layout.
    assert sorted(origin.calls) == sorted(SEEK_PARTS * 2)


async def test_collapsed_readers_share_a_seek_fill(tmp_path: Path) -> None:
    origin = Origin(DATA, delay=0.01)
    cache = await opened(tmp_path, origin, SEEK)
    manifest = make_manifest(DATA)

    async def read(offset: int) -> bytes:
        async with cache.lease(manifest, 1, offset=offset) as lease:
            return b"".join([bytes(b) async for b in lease.blocks(offset, CHUNK - offset)])

    results = await asyncio.gather(*(read(offset) for offset in (600, 0, 999, 250) * 5))
    assert results == [DATA[CHUNK + o : 2 * CHUNK] for o in (600, 0, 999, 250) * 5]
    assert sorted(origin.calls) == sorted(SEEK_PARTS)  # one fill, laid out for the first


async def test_read_ahead_and_warm_fills_keep_the_even_layout(tmp_path: Path) -> None:
    origin = Origin(DATA)
    cache = await opened(tmp_path, origin, SEEK)
    manifest = make_manifest(DATA)
    await cache.ensure(manifest, 1)
    assert cache.prefetch(manifest, 2)
    await cache.idle()
    assert sorted(origin.calls) == [
        (base + i * 250, 250) for base in (1000, 2000) for i in range(4)
    ]
    # A reader at a chunk's start still gets a short first GET of its own.
    async with cache.lease(manifest, 0, offset=0) as lease:
        assert b"".join([bytes(b) async for b in lease.blocks(0, CHUNK)]) == DATA[:CHUNK]
    assert origin.calls[8] == (0, 100)
    assert sorted(origin.calls[8:]) == [(0, 100), (100, 150), (250, 250), (500, 250), (750, 250)]


async def test_the_origin_is_read_while_disk_room_is_being_made(tmp_path: Path) -> None:
    origin = Origin(DATA)
    cache = await opened(tmp_path, origin)
    manifest = make_manifest(DATA)
    disk_checked = asyncio.Event()
    reserve = cache._store._reserve

    async def slow_reserve(size: int) -> int | None:  # room that takes its time
        await disk_checked.wait()
        return await reserve(size)

    cache._store._reserve = slow_reserve  # type: ignore[method-assign]
    async with cache.lease(manifest, 2, offset=0) as lease:
        sent = b"".join([bytes(b) async for b in lease.blocks(0, CHUNK)])
    assert sent == DATA[2000:3000]  # served, verified, before the room was known
    assert not cache.contains(manifest, 2) and cache.inflight == 1
    disk_checked.set()
    await cache.idle()
    assert cache.contains(manifest, 2) and cache.reserved_bytes == 0


async def test_readers_get_bytes_before_the_chunk_is_complete(tmp_path: Path) -> None:
    origin = Origin(DATA)
    origin.gate = asyncio.Event()
    origin.gate_after = 400
    cache = await opened(tmp_path, origin)
    manifest = make_manifest(DATA)
    lease = await cache.acquire(manifest, 0)
    await lease.ready(0, CHUNK)
    blocks = lease.blocks(0, CHUNK)
    first = bytes(await anext(blocks))
    # 400 bytes arrived, the rest is held at the origin: they are served already.
    assert first == DATA[:400]
    assert not cache.contains(manifest, 0)
    origin.gate.set()
    rest = b"".join([bytes(block) async for block in blocks])
    assert first + rest == DATA[:CHUNK]
    cache.release(lease)


async def test_the_last_byte_waits_for_verification(tmp_path: Path) -> None:
    origin = Origin(DATA, corrupt_reads=2)
    origin.gate = asyncio.Event()
    origin.gate_after = CHUNK  # every byte arrives; the read then stalls before returning
    cache = await opened(tmp_path, origin)
    manifest = make_manifest(DATA)
    lease = await cache.acquire(manifest, 0)
    blocks = lease.blocks(0, CHUNK)
    sent = bytes(await anext(blocks))
    assert len(sent) == CHUNK - 1  # everything but the held-back byte
    origin.gate.set()
    with pytest.raises(IntegrityError):
        await anext(blocks)
    cache.release(lease)


async def test_read_ahead_fills_in_the_background(tmp_path: Path) -> None:
    origin = Origin(DATA)
    cache = await opened(tmp_path, origin)
    manifest = make_manifest(DATA)
    assert cache.prefetch(manifest, 2)
    assert not cache.prefetch(manifest, 2)  # already under way: one fill per chunk
    await cache.idle()
    assert cache.contains(manifest, 2)
    assert await read_chunk(cache, manifest, 2) == DATA[2000:3000]
    assert origin.reads == 1
