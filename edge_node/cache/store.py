"""Filling and storing chunks: the part of the cache between the fill (bytes from the
origin, verified) and the disk index (where they are kept).

``ChunkStore`` starts this process's fills under the chunk's node-wide fill lock,
writes each attempt's part file, reserves disk room while the origin is read, and
commits a verified chunk to the index and its path in one step. It also opens stored
chunk files for the first time in this process and checks their SHA-256
(``open_stored``), and drops damaged ones (``damaged``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import asdict, dataclass, field

from fsnode_core.errors import IntegrityError, Unavailable

from edge_node.background import TaskSet, retrieve_exception
from edge_node.cache.config import CacheConfig, CacheStats
from edge_node.cache.disk_index import DiskIndex
from edge_node.cache.fill import ByteBudget, Fetcher, FillBuffer
from edge_node.cache.fill_lock import (
    FillLock,
    Follower,
    create_part,
    discard,
    mark_verified,
    publish,
)
from edge_node.cache.layout import ChunkKey, Layout, file_sha256
from edge_node.cache.leases import ChunkLease, FollowLease
from edge_node.cache.manager import CacheManager
from edge_node.cache.open_files import OpenFiles
from edge_node.manifest import ChunkInfo, Manifest

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Fill:
    """This process's fill of a chunk; waiters attach to its current buffer."""

    lock: FillLock
    task: asyncio.Task[bool] | None = None
    buffer: FillBuffer | None = None
    prefetch: bool = False
    # Where in the chunk the reader that started the fill begins (None: no reader,
    # as for read-ahead and warm work): its bytes are asked for first.
    start: int | None = None
    # How many bytes from ``start`` that reader reads (None: unknown, to the end).
    wants: int | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def changed(self) -> None:
        await self._wake.wait()


class ChunkStore:
    """This process's fills and first opens of stored chunks."""

    def __init__(
        self,
        layout: Layout,
        index: DiskIndex,
        fetcher: Fetcher,
        config: CacheConfig,
        stats: CacheStats,
        manager: CacheManager,
        background: TaskSet,
    ) -> None:
        self.config = config
        self.stats = stats
        self._layout = layout
        self._index = index
        self._fetcher = fetcher
        self._manager = manager
        self._background = background
        self.files = OpenFiles(self.damaged)
        self.budget = ByteBudget(config.fill_memory_bytes)
        self.inflight: dict[ChunkKey, Fill] = {}
        self.prefetching = 0

    def follow(self, key: ChunkKey, chunk: ChunkInfo) -> ChunkLease | None:
        layout = self._layout
        follower = Follower.open(
            chunk.length,
            layout.part_path(key),
            layout.chunk_path(key),
            layout.lock_path(key),
            self.config.follow_interval,
        )
        return FollowLease(key, chunk.length, follower) if follower is not None else None

    @staticmethod
    async def attach(fill: Fill) -> FillBuffer | None:
        """The fill's live buffer, or None once it has finished (look again)."""
        while True:
            buffer = fill.buffer
            if buffer is not None and not buffer.failed:
                return buffer
            task = fill.task
            if task is not None and task.done():
                if task.cancelled():
                    raise Unavailable("the chunk fill was stopped")
                exc = task.exception()
                if exc is not None:
                    raise exc
                return None
            await fill.changed()

    def start_fill(
        self,
        key: ChunkKey,
        manifest: Manifest,
        chunk: ChunkInfo,
        *,
        start: int | None = None,
        wants: int | None = None,
        prefetch: bool = False,
    ) -> Fill | None:
        """This process's fill of the chunk, or None when another process fills it."""
        lock = FillLock(self._layout.lock_path(key))
        if not lock.try_acquire():
            return None
        if start is not None and not 0 <= start < chunk.length:
            start = None
        fill = Fill(lock=lock, prefetch=prefetch, start=start, wants=wants)
        if prefetch:
            self.prefetching += 1
        task = asyncio.create_task(self._fill(key, manifest, chunk, fill), name="chunk-fill")
        fill.task = task
        self.inflight[key] = fill

        def done(_task: asyncio.Task[bool]) -> None:
            if self.inflight.get(key) is fill:
                del self.inflight[key]
            if prefetch:
                self.prefetching -= 1
            lock.release()
            fill.notify()

        task.add_done_callback(done)
        task.add_done_callback(retrieve_exception)
        return fill

    async def _fill(self, key: ChunkKey, manifest: Manifest, chunk: ChunkInfo, fill: Fill) -> bool:
        """Fetch, verify and store one chunk, holding its fill lock; True when kept."""
        holding = fill.prefetch  # read-ahead took its share of fill memory already
        part = self._layout.part_path(key)
        part_fd: int | None = None
        reservation: asyncio.Task[int | None] | None = None
        try:
            # Stored by another process since we looked (or found at start, unchecked).
            if await self.open_stored(key, manifest, chunk):
                return True
            if not holding:
                await self.budget.acquire(chunk.length)
                holding = True
            # Disk room is set aside while the origin is read; the chunk is kept only
            # once it is, so a burst of misses cannot pass the cap.
            reservation = asyncio.create_task(self._reserve(chunk.length))

            def attach(buffer: FillBuffer) -> int | None:
                nonlocal part_fd
                fill.buffer = buffer
                fill.notify()
                if part_fd is not None:
                    os.close(part_fd)
                    part_fd = None
                try:
                    part_fd = create_part(part)
                except OSError as exc:
                    log.warning("could not create a part file: %s", exc)
                return part_fd

            buffer, digest = await self._fetcher.download(
                manifest, chunk, fill.start, attach, wants=fill.wants
            )
            self.stats.fills += 1
            if part_fd is not None and buffer.written:
                await asyncio.to_thread(mark_verified, part_fd)
            held = await _reserved(reservation)
            if held is None or part_fd is None or not buffer.written:
                self.stats.not_stored += 1
                await asyncio.to_thread(discard, part)
                if held is not None:
                    await asyncio.to_thread(self._index.cancel, held)
                return False
            reservation = None
            final = self._layout.chunk_path(key)
            await asyncio.to_thread(
                self._index.commit, held, key, chunk.length, digest, lambda: publish(part, final)
            )
            self._keep_open(key, chunk.length)
            self.stats.bytes_stored += chunk.length
            self._manager.stored()
            return True
        except BaseException:
            with contextlib.suppress(OSError):
                await asyncio.shield(asyncio.to_thread(discard, part))
            raise
        finally:
            if part_fd is not None:
                os.close(part_fd)
            if reservation is not None:
                self._background.spawn(_cancel_reservation(self._index, reservation))
            if holding:
                self.budget.release(chunk.length)

    async def _reserve(self, size: int) -> int | None:
        def flush_and_reserve() -> tuple[int | None, int]:
            # This process's recent hits count in the order eviction follows.
            self._manager.flush()
            return self._index.reserve(size)

        held, evicted = await asyncio.to_thread(flush_and_reserve)
        self.stats.evictions += evicted
        return held

    def _keep_open(self, key: ChunkKey, size: int) -> None:
        """This process wrote and verified the file: open it for hits without a re-check."""
        try:
            fd = os.open(self._layout.chunk_path(key), os.O_RDONLY)
        except FileNotFoundError:
            return
        self.files.add(key, fd, size)

    async def open_stored(self, key: ChunkKey, manifest: Manifest, chunk: ChunkInfo) -> bool:
        """Open a chunk file this process has not opened yet and check its SHA-256;
        True when it is good (now in the open files). A damaged one is dropped."""
        path = self._layout.chunk_path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        keep = False
        try:
            inode = os.fstat(fd).st_ino
            stored = await asyncio.to_thread(self._index.get, key)
            if stored is None:
                if not await asyncio.to_thread(self._index.adopt_or_drop, key, inode):
                    return False
                stored = await asyncio.to_thread(self._index.get, key)
            expected = chunk.sha256 or (stored.sha256 if stored is not None else None)
            digest = await asyncio.to_thread(file_sha256, fd, chunk.length)
            if digest is not None and os.fstat(fd).st_size != chunk.length:
                digest = None  # longer than the chunk: not ours to trust
            if digest is not None and expected is None:
                # Kept before its hash reached the manifest: settle it like a fetch.
                with contextlib.suppress(IntegrityError, Unavailable):
                    expected = await self._fetcher.settle(manifest, chunk, digest)
            if digest is not None and digest == expected:
                if stored is not None and stored.sha256 is None:
                    await asyncio.to_thread(self._index.set_sha256, key, digest)
                self.files.add(key, fd, chunk.length)
                keep = True
                return True
            self.stats.integrity_failures += 1
            self.stats.damaged_files += 1
            log.warning("a chunk file failed its check at first open; refetching key=%s", key)
            self.files.forget(key)
            await asyncio.to_thread(self._index.drop, key, inode)
            await asyncio.to_thread(self._index.report_counters, asdict(self.stats))
            return False
        finally:
            if not keep:
                os.close(fd)

    def damaged(self, key: ChunkKey, inode: int) -> None:
        """A chunk file failed its check or is shorter than recorded: drop it (the
        next request refetches it)."""
        self.stats.damaged_files += 1
        log.warning("dropping a damaged chunk file key=%s", key)
        self.files.forget(key)
        # On the loop: rare, one short transaction, and the request that found the
        # damage must not find the same file again. The node's metrics learn of it now.
        self._index.drop(key, inode)
        self._index.report_counters(asdict(self.stats))


async def _reserved(reservation: asyncio.Task[int | None]) -> int | None:
    try:
        return await asyncio.shield(reservation)
    except OSError as exc:
        log.warning("could not make room for a chunk: %s", exc)
        return None


async def _cancel_reservation(index: DiskIndex, reservation: asyncio.Task[int | None]) -> None:
    with contextlib.suppress(BaseException):
        held = await reservation
        if held is not None:
            await asyncio.to_thread(index.cancel, held)
