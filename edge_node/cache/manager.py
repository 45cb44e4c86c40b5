"""The cache manager (as nginx's): keeps the shared cache inside its bounds and its
bytes honest, in the background.

- Past the high watermark (or under the free-space floor) it evicts down to the
  low watermark, least recently used first, skipping pinned chunks.
- It scrubs: re-hashes stored chunks at ``scrub_bytes_per_second`` against the
  SHA-256 recorded when they were stored; a file that fails is dropped (the next
  request refetches it).
- Every process batches the chunks it served and flushes them into the shared LRU
  order (``touched``/``flush``); only one process per node runs the rest.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from edge_node.cache.config import CacheConfig, CacheStats
from edge_node.cache.disk_index import DiskIndex
from edge_node.cache.layout import ChunkKey, Layout, file_sha256

log = logging.getLogger(__name__)


class CacheManager:
    def __init__(
        self, index: DiskIndex, layout: Layout, config: CacheConfig, stats: CacheStats
    ) -> None:
        self._index = index
        self._layout = layout
        self._config = config
        self._stats = stats
        self._touched: dict[ChunkKey, float] = {}
        self._evicting: asyncio.Task[None] | None = None
        self._scrubbed = 0  # the last rowid scrubbed
        self.busy = False

    def touched(self, key: ChunkKey) -> None:
        self._touched[key] = time.time()

    def flush(self) -> None:
        touched, self._touched = self._touched, {}
        if touched:
            self._index.touch(touched)

    def stored(self) -> None:
        """A fill stored a chunk: evict in the background if that passed the high mark."""
        if self._evicting is None or self._evicting.done():
            self._evicting = asyncio.create_task(self.pass_once())

    async def pass_once(self) -> None:
        self.busy = True
        try:
            freed, count = await asyncio.to_thread(self._index.evict_to_watermark)
        finally:
            self.busy = False
        if count:
            self._stats.evictions += count
            log.info("evicted to the low watermark bytes=%d", freed)

    async def run_forever(self, on_damaged: Callable[[ChunkKey, int], None]) -> None:
        """The manager's loop: watermarks and a scrub step each period."""
        while True:
            await asyncio.sleep(self._config.maintain_interval)
            try:
                await self.pass_once()
                budget = int(self._config.scrub_bytes_per_second * self._config.maintain_interval)
                if budget:
                    await self.scrub(budget, on_damaged)
            except OSError as exc:
                log.warning("cache maintenance failed: %s", exc)

    async def scrub(self, budget: int, on_damaged: Callable[[ChunkKey, int], None]) -> int:
        """Re-hash up to ``budget`` bytes of stored chunks, walking the index in
        storage order and starting over at its end; the count found damaged."""
        damaged = 0
        rows = await asyncio.to_thread(self._index.stored_after, self._scrubbed, 64)
        if not rows:
            self._scrubbed = 0
            return 0
        for rowid, key, stored in rows:
            if budget <= 0:
                break
            self._scrubbed = rowid
            budget -= stored.size
            verdict = await asyncio.to_thread(self._check, key, stored.size, stored.sha256)
            self._stats.scrubbed_bytes += stored.size
            if verdict is not None:
                damaged += 1
                self._stats.integrity_failures += 1
                on_damaged(key, verdict)
        return damaged

    def _check(self, key: ChunkKey, size: int, sha256: str | None) -> int | None:
        """The inode of a damaged chunk file, or None when it is good (or gone)."""
        try:
            fd = os.open(self._layout.chunk_path(key), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            stat = os.fstat(fd)
            good = stat.st_size == size and file_sha256(fd, size) == sha256
            return None if good else stat.st_ino
        finally:
            os.close(fd)
