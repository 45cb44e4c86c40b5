"""The chunk cache (edge_node.cache) on a real directory, with an in-memory origin."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from fsnode_core.errors import IntegrityError
from fsnode_core.ids import new_id

from edge_node.cache import CacheConfig, ChunkCache
from edge_node.cache import open_files as open_files_module
from edge_node.manifests import ChunkInfo, Manifest

CHUNK = 1000


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (no pytest plugin needed)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def make_manifest(data: bytes, version: str = "1", file_id: str | None = None) -> Manifest:
    chunks = tuple(
        ChunkInfo(
            index=i,
            offset=off,
            length=len(data[off : off + CHUNK]),
            sha256=hashlib.sha256(data[off : off + CHUNK]).hexdigest(),
        )
        for i, off in enumerate(range(0, len(data), CHUNK))
    )
    return Manifest(
        file_id=file_id or new_id(),
        version=version,
        size=len(data),
        content_type="application/octet-stream",
        etag='"abc"',
        last_modified=1_700_000_000,
        chunk_size=CHUNK,
        bucket="b",
        key="k",
        path="test/file.bin",
        chunks=chunks,
    )


class Origin:
    """An in-memory origin that counts ranged reads, can hand out damaged bytes, and
    can hold back everything after the first ``gate_after`` bytes of a read until
    ``gate`` is set (a slow origin, without timing)."""

    def __init__(self, data: bytes, corrupt_reads: int = 0, delay: float = 0.0) -> None:
        self.data = data
        self.calls: list[tuple[int, int]] = []
        self.corrupt_reads = corrupt_reads
        self.delay = delay
        self.gate: asyncio.Event | None = None
        self.gate_after = 0
        self.pins: list[tuple[str | None, str | None]] = []  # (version_id, etag) per read

    @property
    def reads(self) -> int:
        """Whole-chunk fetches (reads starting at a chunk boundary)."""
        return sum(1 for offset, _ in self.calls if offset % CHUNK == 0)

    async def read_into(
        self,
        bucket: str,
        key: str,
        offset: int,
        view: memoryview,
        progress: Callable[[int], None],
        *,
        version_id: str | None = None,
        etag: str | None = None,
    ) -> None:
        self.calls.append((offset, len(view)))
        self.pins.append((version_id, etag))
        if self.delay:
            await asyncio.sleep(self.delay)
        out = bytearray(self.data[offset : offset + len(view)])
        if self.corrupt_reads > 0 and offset % CHUNK == 0:
            self.corrupt_reads -= 1
            out[0] ^= 0xFF
        done = 0
        if self.gate is not None:
            done = min(self.gate_after, len(out))
            view[:done] = out[:done]
            progress(done)
            await self.gate.wait()
        view[done:] = out[done:]
        progress(len(out) - done)


DATA = bytes((i * 7) % 251 for i in range(3500))  # chunks of 1000, 1000, 1000, 500


def config(max_bytes: int = 10_000, **overrides: Any) -> CacheConfig:
    """No free-space floor, no background watermark pass: tests say what they use."""
    values: dict[str, Any] = {"min_free_ratio": 0.0, "high_water": 1.0}
    values.update(overrides)
    return CacheConfig(max_bytes=max_bytes, **values)


async def opened(tmp_path: Path, origin: Origin, cfg: CacheConfig | None = None) -> ChunkCache:
    cache = ChunkCache(tmp_path, origin, cfg or config())
    await cache.open()
    return cache


async def read_chunk(cache: ChunkCache, manifest: Manifest, index: int) -> bytes:
    async with cache.lease(manifest, index) as lease:
        return b"".join([bytes(block) async for block in lease.blocks(0, lease.size)])


@run_async
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


@run_async
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


@run_async
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


@run_async
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


@run_async
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


@run_async
async def test_the_free_space_floor_is_kept(tmp_path: Path) -> None:
    # A floor of 99.99% of the real filesystem: statvfs says there is never room.
    cache = await opened(tmp_path, Origin(DATA), config(10_000, min_free_ratio=0.9999))
    manifest = make_manifest(DATA)
    assert await read_chunk(cache, manifest, 0) == DATA[:CHUNK]
    await cache.idle()
    assert cache.used_bytes == 0 and cache.free_bytes == 0
    assert cache.stats.not_stored == 1


@run_async
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


@run_async
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


@run_async
async def test_corrupted_chunk_file_is_detected_and_refetched(tmp_path: Path) -> None:
    origin = Origin(DATA)
    manifest = make_manifest(DATA)
    cache = await opened(tmp_path, origin)
    await cache.ensure(manifest, 0)
    await cache.close()
    path = cache.path_for((manifest.file_id, "1", 0))
    path.write_bytes(b"\x00" * CHUNK)  # same size, wrong bytes: only the hash can tell

    restarted = await opened(tmp_path, origin)
    assert await read_chunk(restarted, manifest, 0) == DATA[:CHUNK]
    await restarted.idle()
    assert origin.reads == 2
    assert restarted.stats.integrity_failures == 1
    assert path.read_bytes() == DATA[:CHUNK]


@run_async
async def test_the_scrub_drops_a_flipped_byte_and_the_next_read_refetches(tmp_path: Path) -> None:
    origin = Origin(DATA)
    manifest = make_manifest(DATA)
    cache = await opened(tmp_path, origin)
    for index in range(4):
        await cache.ensure(manifest, index)
    path = cache.path_for((manifest.file_id, "1", 2))
    damaged = bytearray(path.read_bytes())
    damaged[7] ^= 0x01
    path.write_bytes(bytes(damaged))
    assert await cache.scrub(len(DATA)) == 1
    assert not path.exists() and cache.stats.damaged_files == 1
    assert await read_chunk(cache, manifest, 2) == DATA[2000:3000]
    assert origin.reads == 5  # only the damaged chunk was fetched again
    assert await cache.scrub(len(DATA)) == 0


@run_async
async def test_a_chunk_file_the_index_does_not_count_is_replaced(tmp_path: Path) -> None:
    # As a filler killed between its rename and its commit leaves it: bytes on disk
    # that no budget counts. They are not adopted; the chunk is fetched and counted.
    origin = Origin(DATA)
    manifest = make_manifest(DATA)
    cache = await opened(tmp_path, origin)
    path = cache.path_for((manifest.file_id, "1", 0))
    path.parent.mkdir(parents=True)
    path.write_bytes(DATA[:CHUNK])
    assert await read_chunk(cache, manifest, 0) == DATA[:CHUNK]
    await cache.idle()
    assert origin.reads == 1 and cache.used_bytes == CHUNK and path.exists()


@run_async
async def test_a_truncated_chunk_file_is_dropped_and_refetched(tmp_path: Path) -> None:
    origin = Origin(DATA)
    manifest = make_manifest(DATA)
    cache = await opened(tmp_path, origin)
    assert await read_chunk(cache, manifest, 1) == DATA[1000:2000]
    await cache.idle()
    os.truncate(cache.path_for((manifest.file_id, "1", 1)), 10)
    assert cache.hit(manifest, 1) is None  # the lease's fstat sees it
    assert await read_chunk(cache, manifest, 1) == DATA[1000:2000]
    assert origin.reads == 2 and cache.stats.damaged_files == 1


@run_async
async def test_bad_origin_bytes_fail_their_readers_and_are_refetched_once(tmp_path: Path) -> None:
    origin = Origin(DATA, corrupt_reads=1)
    cache = await opened(tmp_path, origin)
    manifest = make_manifest(DATA)
    # A reader of the damaged attempt never sees a clean end.
    with pytest.raises(IntegrityError):
        await read_chunk(cache, manifest, 1)
    await cache.ensure(manifest, 1)  # the fill's second try stored good bytes
    assert await read_chunk(cache, manifest, 1) == DATA[CHUNK : 2 * CHUNK]
    assert origin.reads == 2


@run_async
async def test_persistently_bad_origin_bytes_raise_integrity_error(tmp_path: Path) -> None:
    origin = Origin(DATA, corrupt_reads=10)
    cache = await opened(tmp_path, origin)
    manifest = make_manifest(DATA)
    with pytest.raises(IntegrityError):
        await cache.ensure(manifest, 1)
    assert origin.reads == 2
    assert not cache.contains(manifest, 1)
    await cache.idle()
    assert cache.used_bytes == 0


@run_async
async def test_concurrent_misses_share_one_origin_read(tmp_path: Path) -> None:
    origin = Origin(DATA, delay=0.05)
    cache = await opened(tmp_path, origin)
    manifest = make_manifest(DATA)
    results = await asyncio.gather(*(read_chunk(cache, manifest, 2) for _ in range(50)))
    assert all(r == DATA[2000:3000] for r in results)
    assert origin.reads == 1


@run_async
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

    async def read_into(
        self,
        bucket: str,
        key: str,
        offset: int,
        view: memoryview,
        progress: Callable[[int], None],
        **kwargs: Any,
    ) -> None:
        self.asked.append(offset)
        await (self.head_go if offset == self.head else self.others).wait()
        await super().read_into(bucket, key, offset, view, progress, **kwargs)


SEEK = config(part_bytes=250, max_parts=4, first_part_bytes=100)
# Chunk 1 read from offset 600: first [600, 700), then the even parts without it,
# the bytes after the first part before the prefix.
SEEK_PARTS = [(1600, 100), (1700, 50), (1750, 250), (1000, 250), (1250, 250), (1500, 100)]


async def guarded(step: Coroutine[Any, Any, Any]) -> Any:
    """Await ``step``, failing the test instead of hanging if it never finishes."""
    return await asyncio.wait_for(step, 30)


@run_async
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


@run_async
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


@run_async
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


@run_async
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


@run_async
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


@run_async
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


@run_async
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


@run_async
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


@run_async
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


@run_async
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


@run_async
async def test_a_new_version_is_a_new_cache_key(tmp_path: Path) -> None:
    new_data = bytes(reversed(DATA))
    cache = await opened(tmp_path, Origin(DATA))
    old = make_manifest(DATA, version="1")
    await cache.ensure(old, 0)
    cache_new = await opened(tmp_path, Origin(new_data))
    new = make_manifest(new_data, version="2", file_id=old.file_id)
    assert await read_chunk(cache_new, new, 0) == new_data[:CHUNK]


@run_async
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


class FileCounter:
    """Opens of chunk files and closes of those descriptors (the rest passes through)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self.root = str(root / "chunks")
        self.opens = 0
        self.live: set[int] = set()
        real_open, real_close = os.open, os.close

        def counting_open(path: Any, flags: int, *args: Any) -> int:
            fd = real_open(path, flags, *args)
            if str(path).startswith(self.root):
                self.opens += 1
                self.live.add(fd)
            return fd

        def counting_close(fd: int) -> None:
            self.live.discard(fd)
            real_close(fd)

        monkeypatch.setattr(os, "open", counting_open)
        monkeypatch.setattr(os, "close", counting_close)

    @property
    def open_now(self) -> int:
        return len(self.live)


async def _disk_read_or_open(cache: ChunkCache, manifest: Manifest, index: int) -> bytes:
    """A hit, opening (and checking) the chunk file first if this process has let go."""
    async with cache.lease(manifest, index) as lease:
        return b"".join([bytes(block) async for block in lease.blocks(0, lease.size)])


async def _disk_read(cache: ChunkCache, manifest: Manifest, index: int) -> bytes:
    lease = cache.hit(manifest, index)
    assert lease is not None
    try:
        return b"".join([bytes(block) async for block in lease.blocks(0, lease.size)])
    finally:
        cache.release(lease)


def test_chunk_files_stay_open_between_hits_within_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(open_files_module, "OPEN_FILES", 2)
    files = FileCounter(monkeypatch, tmp_path)

    async def scenario() -> None:
        cache = await opened(tmp_path, Origin(DATA))
        manifest = make_manifest(DATA)
        for index in range(4):
            await read_chunk(cache, manifest, index)
        await cache.idle()
        before = files.opens  # each fill kept its file open; only two stay open
        for _ in range(5):
            assert await _disk_read_or_open(cache, manifest, 0) == DATA[:CHUNK]
        assert files.opens == before + 1  # one open (and check) for five hits
        for index in range(4):
            await _disk_read_or_open(cache, manifest, index)
        assert files.open_now <= 2
        await cache.close()
        assert files.open_now == 0

    asyncio.run(scenario())


def test_an_evicted_chunk_keeps_serving_its_lease_then_its_file_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = FileCounter(monkeypatch, tmp_path)

    async def scenario() -> None:
        cache = await opened(tmp_path, Origin(DATA))
        manifest = make_manifest(DATA)
        await read_chunk(cache, manifest, 1)
        await cache.idle()
        lease = cache.hit(manifest, 1)
        assert lease is not None
        await cache.evict_file(manifest.file_id)
        assert not cache.contains(manifest, 1)
        assert files.open_now == 1  # still leased: the unlinked inode stays readable
        got = b"".join([bytes(block) async for block in lease.blocks(0, lease.size)])
        assert got == DATA[CHUNK : 2 * CHUNK]
        cache.release(lease)
        assert files.open_now == 0

    asyncio.run(scenario())
