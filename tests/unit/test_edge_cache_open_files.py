"""The chunk cache keeps chunk files open between hits, within a bound, and an evicted
chunk's file stays readable for the lease that holds it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from edge_node.cache import ChunkCache
from edge_node.cache import open_files as open_files_module
from edge_node.manifest import Manifest
from tests.unit.edge_cache_fakes import (
    CHUNK,
    DATA,
    Origin,
    make_manifest,
    opened,
    read_chunk,
)


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
