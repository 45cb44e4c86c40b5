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
from dataclasses import asdict
from pathlib import Path

from fsnode_core.errors import Unavailable

from edge_node.background import TaskSet
from edge_node.cache.config import CacheConfig, CacheStats
from edge_node.cache.disk_index import DiskIndex, Totals
from edge_node.cache.fill import Fetcher, HashSettler, Origin
from edge_node.cache.layout import ChunkKey, Layout, key_for, version_tag
from edge_node.cache.leases import ChunkLease, StreamLease
from edge_node.cache.manager import CacheManager
from edge_node.cache.store import ChunkStore
from edge_node.manifest import Manifest

log = logging.getLogger(__name__)


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
        self._background = TaskSet()
        self._manager = CacheManager(self._index, self._layout, config, self.stats)
        self._store = ChunkStore(
            self._layout,
            self._index,
            Fetcher(origin, config, self.stats, hashes),
            config,
            self.stats,
            self._manager,
            self._background,
        )
        # The store's, named here for the lookups a hit makes.
        self._files = self._store.files
        self._inflight = self._store.inflight
        self._budget = self._store.budget
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
            self._background.spawn(
                self._manager.run_forever(self._store.damaged), name="cache-manager"
            )

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
            await asyncio.to_thread(self._index.report_counters, asdict(self.stats))
            if self._load is not None:
                await asyncio.to_thread(self._index.report_load, self._load)
            await self.refresh()

    # -- accounting (node-wide, from the shared index; read every touch_interval) --

    async def refresh(self) -> Totals:
        """Read the node-wide totals again (the properties below show the last read)."""
        self._totals = await asyncio.to_thread(self._index.totals)
        return self._totals

    def node_stats(self) -> CacheStats:
        """The cache counters of every process of the node, summed: this one's as they
        are now, the others' as last reported (within ``touch_interval``)."""
        reports = self._index.counters()
        reports[os.getpid()] = asdict(self.stats)
        total = CacheStats()
        for report in reports.values():
            for name, value in report.items():
                if hasattr(total, name):
                    setattr(total, name, getattr(total, name) + int(value))
        return total

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
        self,
        manifest: Manifest,
        index: int,
        *,
        offset: int | None = None,
        wants: int | None = None,
    ) -> ChunkLease:
        """A lease on the chunk: a verified file, or streaming from its fill (ours or
        another process's). ``offset`` is where in the chunk the caller will start
        reading: a fill this call starts fetches the bytes from there first, in a
        first GET no longer than ``wants`` (what the caller reads from there) needs."""
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
                if await self._store.open_stored(key, manifest, chunk):
                    continue
                fill = self._store.start_fill(key, manifest, chunk, start=offset, wants=wants)
                if fill is None:
                    follower = self._store.follow(key, chunk)
                    if follower is not None:
                        self.stats.followed_fills += 1
                        return follower
                    # Locked, no part file yet (the filler waits for fill memory).
                    await asyncio.sleep(self.config.follow_interval * 8)
                    continue
                self.stats.demand_fills += 1
            rounds += 1
            buffer = await self._store.attach(fill)
            if buffer is not None:
                return StreamLease(key, buffer)
        raise Unavailable("the chunk kept being evicted while it was requested", key=key)

    async def ensure(self, manifest: Manifest, index: int) -> str:
        """Make sure the chunk is verified and kept on disk (warm work); its SHA-256.

        The hash may be one this edge has just learned (an imported chunk), so the
        answer, not ``manifest``, is what to report.
        """
        key = self._key(manifest, index)
        chunk = manifest.chunks[index]
        for _ in range(8):
            if key in self._files or await self._store.open_stored(key, manifest, chunk):
                stored = await asyncio.to_thread(self._index.get, key)
                if stored is not None and stored.sha256 is not None:
                    return stored.sha256
            fill = self._inflight.get(key) or self._store.start_fill(key, manifest, chunk)
            if fill is None:
                # Another process fills it: wait for its end, then look again.
                follower = self._store.follow(key, chunk)
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
        if self._store.prefetching >= self.config.max_prefetch_fills:
            return False
        chunk = manifest.chunks[index]
        if self._layout.chunk_path(key).exists():
            return False
        if not self._budget.try_acquire(chunk.length):
            return False
        if self._store.start_fill(key, manifest, chunk, prefetch=True) is None:
            self._budget.release(chunk.length)
            return False
        self.stats.prefetches += 1
        return True

    async def scrub(self, budget: int) -> int:
        """Re-hash up to ``budget`` bytes of stored chunks now (the manager does it in
        the background); the count found damaged and dropped."""
        return await self._manager.scrub(budget, self._store.damaged)

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
