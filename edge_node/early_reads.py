"""A cold request's first data range, read at once beside its head and manifest.

A request that names its version (a pinned file share, a folder share's tree entry) for
a file this edge holds no manifest of needs three S3 reads: the head, the manifest and
the data. An upload's bytes are at a key known from the file id and version alone
(``fsnode_core.published_keys.data_key``), so ``first_bytes`` where the cache's fill will
begin (the request's offset, or its chunk's start for chunks no longer than that) are
asked for at the same time; when the manifest is in and the cache's fill asks
the origin for a part starting exactly there, it is served from that read (as its bytes
arrive) and only the rest, if any, is read again. So a cold first byte waits for one
round trip, not three in a row.

The size is not known yet, so the read takes a short body where the object ends. It is
only a head start: bytes are used only for a read of that object at that offset (an
import's reads are pinned and never take them), one that fails or is not used is
dropped, and at most ``MAX_EARLY`` are kept (each at most ``first_bytes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from fsnode_core.published_keys import data_key

from edge_node.background import TaskSet
from edge_node.cache import ChunkCache, version_tag
from edge_node.origin import OriginFetcher
from edge_node.published_reader import PublishedReader

log = logging.getLogger(__name__)

MAX_EARLY = 64
# An early read nobody used within this many seconds is dropped.
KEEP_SECONDS = 10.0

_Name = tuple[str, str, int]


@dataclass(slots=True)
class _Early:
    buffer: bytearray
    started: float
    got: int = 0
    done: bool = False
    failed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def progress(self, count: int) -> None:
        self.got += count
        self.changed.set()


class EarlyReads:
    """The cache's origin (``read_into``), with early first ranges it can start."""

    def __init__(
        self,
        fetcher: OriginFetcher,
        published: PublishedReader,
        first_bytes: int,
        chunk_size: int = 0,
    ) -> None:
        self._fetcher = fetcher
        self._published = published
        # The fleet's chunk size (registration's): where the cache's first GET will begin.
        self.chunk_size = chunk_size
        # Whether the cache holds a chunk (file id, version, index): no early read then.
        self.held: Callable[[str, str, int], bool] = lambda _file, _version, _index: False
        self.first_bytes = first_bytes
        self._reads: OrderedDict[_Name, _Early] = OrderedDict()
        self._tasks = TaskSet()
        # Counters for tests and /metrics: started, and bytes the cache took from them.
        self.started = 0
        self.used_bytes = 0

    def start_upload(self, file_id: str, version: str, range_header: str | None) -> None:
        """Begin reading where a request for an uploaded version will start (its Range:
        none, or one ``bytes=N-[M]``; other forms start nothing)."""
        offset = first_offset(range_header)
        if offset is None or not self._published.bucket or self.chunk_size <= 0:
            return
        if self.held(file_id, version, offset // self.chunk_size):
            return  # kept from before (a restart forgets manifests, not chunks)
        if self.chunk_size <= self.first_bytes:
            # A chunk no longer than the first part is read whole, from its start
            # (edge_node.fill_parts); else the fill's first part begins at the offset.
            offset -= offset % self.chunk_size
        self.start(self._published.bucket, data_key(file_id, version), offset)

    def start(self, bucket: str, key: str, offset: int) -> None:
        """Begin reading ``first_bytes`` of ``bucket/key`` from ``offset``; never waits."""
        if self.first_bytes <= 0 or offset < 0:
            return
        name = (bucket, key, offset)
        now = time.monotonic()
        while self._reads:
            oldest = next(iter(self._reads.values()))
            if now - oldest.started < KEEP_SECONDS and len(self._reads) < MAX_EARLY:
                break
            self._reads.popitem(last=False)
        if name in self._reads:
            return
        early = _Early(bytearray(self.first_bytes), now)
        self._reads[name] = early
        self.started += 1
        self._tasks.spawn(self._read(name, early), name=f"early-{key}")

    async def _read(self, name: _Name, early: _Early) -> None:
        bucket, key, offset = name
        try:
            await self._fetcher.read_upto(
                bucket, key, offset, memoryview(early.buffer), early.progress
            )
        except Exception as exc:
            early.failed = True
            log.info("early read failed key=%s: %s", key, exc)
            if self._reads.get(name) is early:
                del self._reads[name]
        finally:
            early.done = True
            early.changed.set()

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
        early = None if version_id or etag else self._reads.pop((bucket, key, offset), None)
        copied = 0
        if early is not None:
            copied = await self._copy(early, view, progress)
            self.used_bytes += copied
        if copied < len(view):
            await self._fetcher.read_into(
                bucket,
                key,
                offset + copied,
                view[copied:],
                progress,
                version_id=version_id,
                etag=etag,
            )

    @staticmethod
    async def _copy(early: _Early, view: memoryview, progress: Callable[[int], None]) -> int:
        """Bytes of the early read into ``view`` as they arrive; how many (it may end
        short: the rest is read again)."""
        copied = 0
        while copied < len(view):
            available = min(early.got, len(view))
            if available > copied:
                view[copied:available] = early.buffer[copied:available]
                progress(available - copied)
                copied = available
                continue
            if early.done:
                break
            early.changed.clear()
            await early.changed.wait()
        return 0 if early.failed and copied == 0 else copied

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._tasks.close()
        self._reads.clear()


def first_offset(range_header: str | None) -> int | None:
    """The first byte a request reads: 0 without Range, N for one ``bytes=N-[M]``."""
    if range_header is None:
        return 0
    unit, _, spec = range_header.partition("=")
    first, dash, _last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or "," in spec or not dash or not first.isdigit():
        return None
    return int(first)


def held_on_disk(cache: ChunkCache) -> Callable[[str, str, int], bool]:
    """``EarlyReads.held`` for a chunk cache: the chunk's file exists (one stat, only for
    a request whose manifest this process does not hold)."""

    def held(file_id: str, version: str, index: int) -> bool:
        return cache.path_for((file_id, version_tag(version), index)).exists()

    return held
