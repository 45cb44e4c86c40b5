"""The chunk cache checks what it holds and what the origin sends: damaged chunk
files and bad origin bytes are dropped and fetched again, never served."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fsnode_core.errors import IntegrityError

from tests.unit.edge_cache_fakes import (
    CHUNK,
    DATA,
    Origin,
    make_manifest,
    opened,
    read_chunk,
)


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
