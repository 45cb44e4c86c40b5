"""What the chunk cache's unit tests share: an in-memory origin, manifests of its
bytes, and a cache opened on a real directory."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fsnode_core.ids import new_id

from edge_node.cache import CacheConfig, ChunkCache
from edge_node.manifest import ChunkInfo, Manifest

CHUNK = 1000


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
