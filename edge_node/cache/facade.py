"""The chunk cache the server uses: a hit, a miss that streams through its fill, a
fill, read-ahead, warm work, eviction of a file.

Request flow (``acquire``):
1. This process has the chunk file open and verified: a ``DiskLease`` (``hit``
   does this without a coroutine).
2. A fill of this process is under way: a ``StreamLease`` on its buffer.
3. The chunk file exists but this process has not opened it: it is opened and its
   SHA-256 checked (against the manifest, or the hash the index recorded), then 1.
   A damaged or truncated file is dropped and refetched.
4. Otherwise this process takes the chunk's fill lock and fills it (2), or, when
   another process holds it, follows that fill's part file (a ``FollowLease``).

See edge_node/README.md (Cache) for the whole design and ``fill_lock`` for the
cross-process part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from fsnode_core.errors import IntegrityError, Unavailable

from edge_node.background import TaskSet, retrieve_exception
from edge_node.cache.config import CacheConfig, CacheStats
from edge_node.cache.disk_index import DiskIndex, Totals
from edge_node.cache.fill import ByteBudget, Fetcher, FillBuffer, HashSettler, Origin
from edge_node.cache.fill_lock import (
    FillLock,
    Follower,
    create_part,
    discard,
    mark_verified,
    publish,
)
from edge_node.cache.layout import ChunkKey, Layout, file_sha256, key_for, version_tag
from edge_node.cache.leases import ChunkLease, StreamLease
from edge_node.cache.manager import CacheManager
from edge_node.cache.open_files import OpenFiles
from edge_node.manifests import ChunkInfo, Manifest

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Fill:
    """This process's fill of a chunk; waiters attach to its current buffer."""

    lock: FillLock
    task: asyncio.Task[bool] | None = None
    buffer: FillBuffer | None = None
    prefetch: bool = False
    # Where in the chunk the reader that started the fill begins (None: no reader,
    # as for read-ahead and warm work): its bytes are asked for first.
    start: int | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def changed(self) -> None:
        await self._wake.wait()


class ChunkCache:
    """One process's handle on the node's shared chunk cache."""

    def __init__(
        self, root: Path, origin: Origin, config: CacheConfig, hashes: HashSettler | None = None
    ) -> None:
        self.config = config
        self.max_bytes = config.max_bytes
        self.stats = CacheStats()
        self._layout = Layout(root)
        self._index = DiskIndex(self._layout, config)
        self._fetcher = Fetcher(origin, config, self.stats, hashes)
        self._files = OpenFiles(self._damaged)
        self._budget = ByteBudget(config.fill_memory_bytes)
        self._inflight: dict[ChunkKey, _Fill] = {}
        self._prefetching = 0
        self._background = TaskSet()
        self._manager = CacheManager(self._index, self._layout, config, self.stats)
        self._totals = Totals(0, 0, 0, 0, 0)
        self._load: int | None = None

    # -- start and stop ----------------------------------------------------------

    async def open(self, *, recover: bool = True, manage: bool = True) -> None:
        """Join the shared cache. ``recover``: this is the node's first process (no
        other runs): clear fills that were in progress and rebuild the index from
        the files on disk. ``manage``: run the cache manager here (watermarks,
        scrub); the node runs it in one process."""
        await asyncio.to_thread(self._layout.make_dirs)
        await asyncio.to_thread(self._index.connect)
        if recover:
            found = await asyncio.to_thread(self._layout.recover)
            await asyncio.to_thread(self._index.rebuild, found)
            log.info("chunk cache opened chunks=%d", len(found))
            await self._manager.pass_once()
        await self.refresh()
        self._background.spawn(self._flush_forever(), name="cache-touch")
        if manage:
            self._background.spawn(self._manager.run_forever(self._damaged), name="cache-manager")

    async def close(self) -> None:
        """Cancel fills, read-ahead and maintenance (at shutdown)."""
        tasks = [fill.task for fill in self._inflight.values() if fill.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._background.close()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._manager.flush)
        self._files.close()
        self._index.close()

    async def idle(self) -> None:
        """Wait until this process has no fill and no background write under way
        (tests wait on this instead of sleeping)."""
        while self._inflight or self._manager.busy:
            tasks = [f.task for f in self._inflight.values() if f.task is not None]
            if tasks:
                await asyncio.wait(tasks)
            else:
                await asyncio.sleep(0.005)
        await self.refresh()

    async def _flush_forever(self) -> None:
        """Hand this process's hits to the shared LRU order and re-read the totals."""
        while True:
            await asyncio.sleep(self.config.touch_interval)
            await asyncio.to_thread(self._manager.flush)
            if self._load is not None:
                await asyncio.to_thread(self._index.report_load, self._load)
            await self.refresh()

    # -- accounting (node-wide, from the shared index; read every touch_interval) --

    async def refresh(self) -> Totals:
        """Read the node-wide totals again (the properties below show the last read)."""
        self._totals = await asyncio.to_thread(self._index.totals)
        return self._totals

    @property
    def used_bytes(self) -> int:
        return self._totals.used

    @property
    def reserved_bytes(self) -> int:
        return self._totals.reserved

    @property
    def chunk_count(self) -> int:
        return self._totals.chunks

    @property
    def free_bytes(self) -> int:
        """Bytes the cache may still take: under its cap and above the disk's free floor."""
        t = self._totals
        by_cap = self.max_bytes - t.used - t.reserved
        if not t.disk_total:
            return max(0, by_cap)
        floor = int(t.disk_total * self.config.min_free_ratio)
        return max(0, min(by_cap, t.disk_avail - t.reserved - floor))

    @property
    def fill_buffer_bytes(self) -> int:
        return self._budget.used

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def open_files(self) -> int:
        return len(self._files)

    def path_for(self, key: ChunkKey) -> Path:
        return self._layout.chunk_path(key)

    def report_load(self, in_flight: int) -> None:
        """This worker's requests in flight, for the node's heartbeat (next flush)."""
        self._load = in_flight

    async def node_load(self) -> int:
        """Requests in flight on every worker (as they last reported them)."""
        return await asyncio.to_thread(self._index.load, self.config.touch_interval * 5)

    async def hot_files(self, limit: int = 32) -> list[str]:
        """File ids of the most recently used chunks on the node, newest first."""
        await asyncio.to_thread(self._manager.flush)
        return await asyncio.to_thread(self._index.hot_files, limit)

    def contains(self, manifest: Manifest, index: int) -> bool:
        """True when the chunk is stored on disk (by any process)."""
        return self._layout.chunk_path(key_for(manifest, index)).exists()

    def is_filling(self, manifest: Manifest, index: int) -> bool:
        return key_for(manifest, index) in self._inflight

    # -- serving -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lease(
        self, manifest: Manifest, index: int, *, offset: int | None = None
    ) -> AsyncIterator[ChunkLease]:
        """Hold chunk ``index`` of ``manifest`` (filling it on a miss) while in use."""
        held = await self.acquire(manifest, index, offset=offset)
        try:
            yield held
        finally:
            held.release()

    @staticmethod
    def release(lease: ChunkLease) -> None:
        lease.release()

    def hit(self, manifest: Manifest, index: int) -> ChunkLease | None:
        """A lease on the chunk if this process has it open and verified, else None:
        ``acquire`` without a coroutine, for the common case of a hit."""
        key = self._key(manifest, index)
        held = self._files.lease(key)
        if held is not None:
            self.stats.hits += 1
            self._manager.touched(key)
        return held

    async def acquire(
        self, manifest: Manifest, index: int, *, offset: int | None = None
    ) -> ChunkLease:
        """A lease on the chunk: a verified file, or streaming from its fill (ours or
        another process's). ``offset`` is where in the chunk the caller will start
        reading: a fill this call starts fetches the bytes from there first."""
        key = self._key(manifest, index)
        chunk = manifest.chunks[index]
        counted = False
        # A few rounds: a chunk can be evicted (or its fill fail elsewhere) between
        # two looks; waiting on another process's fill does not count as a round.
        rounds = 0
        while rounds < 8:
            held = self._files.lease(key)
            if held is not None:
                self.stats.hits += 1
                self._manager.touched(key)
                return held
            if not counted:
                self.stats.misses += 1
                counted = True
            fill = self._inflight.get(key)
            if fill is None:
                if await self._open_stored(key, manifest, chunk):
                    continue
                fill = self._start_fill(key, manifest, chunk, start=offset)
                if fill is None:
                    follower = self._follow(key, chunk)
                    if follower is not None:
                        self.stats.followed_fills += 1
                        return follower
                    # Locked, no part file yet (the filler waits for fill memory).
                    await asyncio.sleep(self.config.follow_interval * 8)
                    continue
                self.stats.demand_fills += 1
            rounds += 1
            buffer = await self._attach(fill)
            if buffer is not None:
                return StreamLease(key, buffer)
        raise Unavailable("the chunk kept being evicted while it was requested", key=key)

    def _follow(self, key: ChunkKey, chunk: ChunkInfo) -> ChunkLease | None:
        from edge_node.cache.leases import FollowLease

        layout = self._layout
        follower = Follower.open(
            chunk.length,
            layout.part_path(key),
            layout.chunk_path(key),
            layout.lock_path(key),
            self.config.follow_interval,
        )
        return FollowLease(key, chunk.length, follower) if follower is not None else None

    async def _attach(self, fill: _Fill) -> FillBuffer | None:
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

    async def ensure(self, manifest: Manifest, index: int) -> str:
        """Make sure the chunk is verified and kept on disk (warm work); its SHA-256.

        The hash may be one this edge has just learned (an imported chunk), so the
        answer, not ``manifest``, is what to report.
        """
        key = self._key(manifest, index)
        chunk = manifest.chunks[index]
        for _ in range(8):
            if key in self._files or await self._open_stored(key, manifest, chunk):
                stored = await asyncio.to_thread(self._index.get, key)
                if stored is not None and stored.sha256 is not None:
                    return stored.sha256
            fill = self._inflight.get(key) or self._start_fill(key, manifest, chunk)
            if fill is None:
                # Another process fills it: wait for its end, then look again.
                follower = self._follow(key, chunk)
                if follower is not None:
                    with contextlib.suppress(Unavailable):
                        await follower.ready(0, 1)
                    follower.release()
                else:
                    await asyncio.sleep(self.config.follow_interval * 8)
                continue
            self.stats.warm_fills += 1
            assert fill.task is not None
            # shield: the work item going away must not cancel a fill others share.
            if not await asyncio.shield(fill.task):
                raise Unavailable("no disk space to keep the chunk", key=key)
        raise Unavailable("the chunk kept being evicted while it was warmed", key=key)

    def prefetch(self, manifest: Manifest, index: int) -> bool:
        """Start filling a chunk in the background (read-ahead) if it is missing and
        there is room (fill memory, read-ahead slots); never waits, never raises."""
        if not 0 <= index < len(manifest.chunks):
            return False
        key = self._key(manifest, index)
        if key in self._inflight or key in self._files:
            return False
        if self._prefetching >= self.config.max_prefetch_fills:
            return False
        chunk = manifest.chunks[index]
        if self._layout.chunk_path(key).exists():
            return False
        if not self._budget.try_acquire(chunk.length):
            return False
        if self._start_fill(key, manifest, chunk, prefetch=True) is None:
            self._budget.release(chunk.length)
            return False
        self.stats.prefetches += 1
        return True

    async def scrub(self, budget: int) -> int:
        """Re-hash up to ``budget`` bytes of stored chunks now (the manager does it in
        the background); the count found damaged and dropped."""
        return await self._manager.scrub(budget, self._damaged)

    async def evict_file(self, file_id: str, version: str | None = None) -> int:
        """Drop a file's chunks (one version or all), on the whole node; open leases
        keep reading."""
        tag = version_tag(version) if version is not None else None
        self._files.forget_file(file_id, tag)
        removed = await asyncio.to_thread(self._index.remove_file, file_id, tag)
        self.stats.evictions += removed
        return removed

    # -- fills -------------------------------------------------------------------

    @staticmethod
    def _key(manifest: Manifest, index: int) -> ChunkKey:
        if not 0 <= index < len(manifest.chunks):
            raise ValueError(f"chunk {index} is outside the file")
        return key_for(manifest, index)

    def _start_fill(
        self,
        key: ChunkKey,
        manifest: Manifest,
        chunk: ChunkInfo,
        *,
        start: int | None = None,
        prefetch: bool = False,
    ) -> _Fill | None:
        """This process's fill of the chunk, or None when another process fills it."""
        lock = FillLock(self._layout.lock_path(key))
        if not lock.try_acquire():
            return None
        if start is not None and not 0 <= start < chunk.length:
            start = None
        fill = _Fill(lock=lock, prefetch=prefetch, start=start)
        if prefetch:
            self._prefetching += 1
        task = asyncio.create_task(self._fill(key, manifest, chunk, fill), name="chunk-fill")
        fill.task = task
        self._inflight[key] = fill

        def done(_task: asyncio.Task[bool]) -> None:
            if self._inflight.get(key) is fill:
                del self._inflight[key]
            if prefetch:
                self._prefetching -= 1
            lock.release()
            fill.notify()

        task.add_done_callback(done)
        task.add_done_callback(retrieve_exception)
        return fill

    async def _fill(self, key: ChunkKey, manifest: Manifest, chunk: ChunkInfo, fill: _Fill) -> bool:
        """Fetch, verify and store one chunk, holding its fill lock; True when kept."""
        holding = fill.prefetch  # read-ahead took its share of fill memory already
        part = self._layout.part_path(key)
        part_fd: int | None = None
        reservation: asyncio.Task[int | None] | None = None
        try:
            # Stored by another process since we looked (or found at start, unchecked).
            if await self._open_stored(key, manifest, chunk):
                return True
            if not holding:
                await self._budget.acquire(chunk.length)
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

            buffer, digest = await self._fetcher.download(manifest, chunk, fill.start, attach)
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
                self._budget.release(chunk.length)

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
        self._files.add(key, fd, size)

    async def _open_stored(self, key: ChunkKey, manifest: Manifest, chunk: ChunkInfo) -> bool:
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
                self._files.add(key, fd, chunk.length)
                keep = True
                return True
            self.stats.integrity_failures += 1
            self.stats.damaged_files += 1
            log.warning("a chunk file failed its check at first open; refetching key=%s", key)
            self._files.forget(key)
            await asyncio.to_thread(self._index.drop, key, inode)
            return False
        finally:
            if not keep:
                os.close(fd)

    def _damaged(self, key: ChunkKey, inode: int) -> None:
        """A chunk file failed its check or is shorter than recorded: drop it (the
        next request refetches it)."""
        self.stats.damaged_files += 1
        log.warning("dropping a damaged chunk file key=%s", key)
        self._files.forget(key)
        # On the loop: rare, one short transaction, and the request that found the
        # damage must not find the same file again.
        self._index.drop(key, inode)


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
