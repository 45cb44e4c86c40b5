"""The chunk cache (edge_node.cache) on a real directory, with an in-memory origin."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from fsnode_core.errors import IntegrityError, Unavailable
from fsnode_core.ids import new_id

from edge_node.cache import ChunkCache
from edge_node.manifests import ChunkInfo, Manifest, ManifestStore

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
        status="ready",
        chunks=chunks,
    )


class Origin:
    """An in-memory origin that counts reads and can hand out damaged bytes."""

    def __init__(self, data: bytes, corrupt_reads: int = 0, delay: float = 0.0) -> None:
        self.data = data
        self.reads = 0
        self.corrupt_reads = corrupt_reads
        self.delay = delay

    async def __call__(self, manifest: Manifest, chunk: ChunkInfo) -> bytes:
        self.reads += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        out = self.data[chunk.offset : chunk.offset + chunk.length]
        if self.corrupt_reads > 0:
            self.corrupt_reads -= 1
            out = bytes([out[0] ^ 0xFF]) + out[1:]
        return out


DATA = bytes((i * 7) % 251 for i in range(3500))  # chunks of 1000, 1000, 1000, 500


async def read_chunk(cache: ChunkCache, manifest: Manifest, index: int) -> bytes:
    async with cache.lease(manifest, index) as lease:
        return await lease.read(0, lease.entry.size)


@run_async
async def test_fill_writes_atomically_and_serves_the_right_bytes(tmp_path: Path) -> None:
    origin = Origin(DATA)
    cache = ChunkCache(tmp_path, 10_000, origin)
    await cache.open()
    manifest = make_manifest(DATA)
    assert await read_chunk(cache, manifest, 3) == DATA[3000:]
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
    first = ChunkCache(tmp_path, 10_000, origin)
    await first.open()
    for index in range(4):
        await read_chunk(first, manifest, index)
    (tmp_path / "tmp" / "chunk.leftover").write_bytes(b"half a chunk")

    second = ChunkCache(tmp_path, 10_000, origin)
    await second.open()
    assert second.chunk_count == 4
    assert second.used_bytes == len(DATA)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert b"".join([await read_chunk(second, manifest, i) for i in range(4)]) == DATA
    assert origin.reads == 4  # everything came from disk after the restart


@run_async
async def test_lru_eviction_under_a_small_cap(tmp_path: Path) -> None:
    origin = Origin(DATA)
    cache = ChunkCache(tmp_path, 2500, origin)
    await cache.open()
    manifest = make_manifest(DATA)
    await read_chunk(cache, manifest, 0)
    await read_chunk(cache, manifest, 1)
    await read_chunk(cache, manifest, 0)  # 0 is now more recent than 1
    await read_chunk(cache, manifest, 2)
    assert cache.contains(manifest, 0) and cache.contains(manifest, 2)
    assert not cache.contains(manifest, 1)
    assert not cache.path_for((manifest.file_id, "1", 1)).exists()
    assert cache.stats.evictions == 1
    assert cache.used_bytes == 2000 <= cache.max_bytes


@run_async
async def test_pinned_chunks_are_not_evicted(tmp_path: Path) -> None:
    origin = Origin(DATA)
    cache = ChunkCache(tmp_path, 2500, origin)
    await cache.open()
    manifest = make_manifest(DATA)
    async with cache.lease(manifest, 0) as pinned:
        await read_chunk(cache, manifest, 1)
        await read_chunk(cache, manifest, 2)  # must evict 1, the LRU unpinned chunk
        assert cache.contains(manifest, 0)
        assert not cache.contains(manifest, 1)
        assert await pinned.read(0, CHUNK) == DATA[:CHUNK]


@run_async
async def test_explicit_eviction_does_not_break_an_open_lease(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, 10_000, Origin(DATA))
    await cache.open()
    manifest = make_manifest(DATA)
    async with cache.lease(manifest, 1) as lease:
        assert await cache.evict_file(manifest.file_id) == 1
        assert cache.used_bytes == 0
        assert await lease.read(0, CHUNK) == DATA[CHUNK : 2 * CHUNK]


@run_async
async def test_corrupted_chunk_file_is_detected_and_refetched(tmp_path: Path) -> None:
    origin = Origin(DATA)
    manifest = make_manifest(DATA)
    cache = ChunkCache(tmp_path, 10_000, origin)
    await cache.open()
    await read_chunk(cache, manifest, 0)
    path = cache.path_for((manifest.file_id, "1", 0))
    path.write_bytes(b"\x00" * CHUNK)  # same size, wrong bytes: only the hash can tell

    restarted = ChunkCache(tmp_path, 10_000, origin)
    await restarted.open()
    assert await read_chunk(restarted, manifest, 0) == DATA[:CHUNK]
    assert origin.reads == 2
    assert restarted.stats.integrity_failures == 1
    assert path.read_bytes() == DATA[:CHUNK]


@run_async
async def test_bad_origin_bytes_are_refetched_once(tmp_path: Path) -> None:
    origin = Origin(DATA, corrupt_reads=1)
    cache = ChunkCache(tmp_path, 10_000, origin)
    await cache.open()
    manifest = make_manifest(DATA)
    assert await read_chunk(cache, manifest, 1) == DATA[CHUNK : 2 * CHUNK]
    assert origin.reads == 2


@run_async
async def test_persistently_bad_origin_bytes_raise_integrity_error(tmp_path: Path) -> None:
    origin = Origin(DATA, corrupt_reads=10)
    cache = ChunkCache(tmp_path, 10_000, origin)
    await cache.open()
    manifest = make_manifest(DATA)
    with pytest.raises(IntegrityError):
        await read_chunk(cache, manifest, 1)
    assert origin.reads == 2
    assert not cache.contains(manifest, 1)
    assert cache.used_bytes == 0


@run_async
async def test_concurrent_misses_share_one_origin_read(tmp_path: Path) -> None:
    origin = Origin(DATA, delay=0.05)
    cache = ChunkCache(tmp_path, 10_000, origin)
    await cache.open()
    manifest = make_manifest(DATA)
    results = await asyncio.gather(*(read_chunk(cache, manifest, 2) for _ in range(50)))
    assert all(r == DATA[2000:3000] for r in results)
    assert origin.reads == 1


@run_async
async def test_a_new_version_is_a_new_cache_key(tmp_path: Path) -> None:
    new_data = bytes(reversed(DATA))
    cache = ChunkCache(tmp_path, 10_000, Origin(DATA))
    await cache.open()
    old = make_manifest(DATA, version="1")
    await read_chunk(cache, old, 0)
    cache_new = ChunkCache(tmp_path, 10_000, Origin(new_data))
    await cache_new.open()
    new = make_manifest(new_data, version="2", file_id=old.file_id)
    assert await read_chunk(cache_new, new, 0) == new_data[:CHUNK]


class FlakySource:
    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.up = True

    async def fetch_manifest(self, file_id: str) -> Manifest:
        if not self.up:
            raise Unavailable("control plane down")
        return self.manifest


@run_async
async def test_manifests_keep_serving_from_disk_when_the_control_plane_is_down(
    tmp_path: Path,
) -> None:
    manifest = make_manifest(DATA)
    source = FlakySource(manifest)
    assert await ManifestStore(source, tmp_path).get(manifest.file_id, "1") == manifest
    source.up = False
    restarted = ManifestStore(source, tmp_path)  # nothing in memory: disk copy only
    assert await restarted.get(manifest.file_id, "1") == manifest
    with pytest.raises(Unavailable):
        await restarted.get(new_id(), "1")
