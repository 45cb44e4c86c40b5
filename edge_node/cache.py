"""The chunk cache: verified chunks in a memory tier and on local disk, filled from
the origin by streaming fills.

Disk layout under ``ROOT``: ``chunks/FF/FILE_ID/VERSION_TAG/INDEX`` holds one
chunk's bytes, ``tmp/`` holds writes in progress (renamed into place when
complete, so a reader never sees a partial chunk). The index lives in memory and
is rebuilt from the directory tree at start; chunks found there are checked
against their SHA-256 on first use.

A miss starts one fill per chunk (request collapsing): the chunk is split into a
few parts fetched by concurrent ranged GETs into one preallocated buffer, and
every waiter streams from that buffer as bytes land, without waiting for the
whole chunk. The SHA-256 is computed as the contiguous prefix grows. A chunk
whose hash nobody knows yet (an imported object) verifies when the control plane
records the digest or answers that it already had it (``HashSettler``). A streaming
reader holds back the last byte of its slice until the chunk has verified; if
the check fails the reader raises, the server cuts the connection, and the
client sees a body shorter than its Content-Length instead of a clean end. The
bytes before the cut may be wrong, which is why it must not look complete;
HTTP/1.1 has no other way to take bytes back once sent. The bad buffer is never
stored, and the fill tries a fresh buffer once more for later readers.

Bounds: fill buffers share a byte budget (demand fills wait for it, read-ahead
only runs when it is free); the memory tier holds the hottest verified chunks up
to its own byte cap; the disk holds at most ``max_bytes`` and keeps a share of
the filesystem free. A fill reserves its disk space before the first origin
byte arrives, evicting least-recently-used chunks if needed, so a burst of
misses cannot push the cache past its cap; a fill that finds no room still
serves its readers, it just is not kept. Past the high watermark a background
pass evicts down to the low watermark. Leased chunks (being served) are pinned
and never evicted; an explicit eviction of a file only unlinks, and open
descriptors keep reading.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import hashlib
import logging
import mmap
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fsnode_core.errors import IntegrityError, InvalidInput, Unavailable
from fsnode_core.ids import check_id

from edge_node.admission import MemoryAdmission
from edge_node.background import TaskSet, retrieve_exception
from edge_node.diskio import pread, read_if_cached
from edge_node.fill_parts import check_tiling, fill_parts, first_part_leads
from edge_node.manifests import ChunkInfo, Manifest

log = logging.getLogger(__name__)

# (file_id, version tag, chunk index): a new version is a new key, so a chunk of
# an overwritten file can never be served for the new version.
ChunkKey = tuple[str, str, int]
# A chunk's bytes in memory: a fill's buffer (``zeroed``) or a file read (promotion).
Buffer = bytes | bytearray | mmap.mmap

MIB = 1024 * 1024
# Largest block handed to the writer at once: bounds per-connection buffering (a
# stalled reader pins about two), and still a large write for TLS (NOTES.md).
BLOCK = 256 * 1024
# Hash the growing prefix in steps of at least this much (each step is a thread hop).
_HASH_STEP = MIB

# Chunk files kept open between hits, as nginx's open_file_cache does: an open and
# a close per request were about 4% of a 64 KiB HTTPS hit's CPU.
OPEN_FILES = 256

_SAFE_VERSION = re.compile(r"[0-9A-Za-z_-]{1,64}")


class Origin(Protocol):
    """Where chunk bytes come from (``edge_node.origin.OriginFetcher``)."""

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
    ) -> None: ...


class HashSettler(Protocol):
    """Fixes unknown chunk hashes (``edge_node.chunk_hashes.ChunkHashRecorder``)."""

    async def settle(self, manifest: Manifest, index: int, sha256: str) -> str: ...


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Cache bounds; see edge_node/README.md (FSNODE_CACHE_*, FSNODE_MEMORY_*)."""

    max_bytes: int
    high_water: float = 0.90
    low_water: float = 0.80
    # Keep at least this share of the cache's filesystem free, whatever max_bytes says.
    min_free_ratio: float = 0.05
    memory_bytes: int = 64 * MIB
    fill_memory_bytes: int = 64 * MIB
    part_bytes: int = 2 * MIB
    max_parts: int = 4
    # A fill a reader starts asks first for this much at the reader's offset, so its
    # first byte waits for one short GET (0: every fill takes the even layout).
    first_part_bytes: int = 256 * 1024
    max_prefetch_fills: int = 4
    maintain_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError("the cache needs a positive byte cap")
        if not 0 < self.low_water <= self.high_water <= 1:
            raise ValueError("watermarks must satisfy 0 < low <= high <= 1")
        if not 0 <= self.min_free_ratio < 1:
            raise ValueError("the minimum free share must be in [0, 1)")
        if self.part_bytes <= 0 or self.max_parts <= 0 or self.fill_memory_bytes <= 0:
            raise ValueError("fill parts and fill memory must be positive")
        if self.first_part_bytes < 0:
            raise ValueError("the first part's size must not be negative")


@functools.lru_cache(maxsize=4096)
def version_tag(version: str) -> str:
    """A path-safe directory name for a version string (hashed when not plain)."""
    if _SAFE_VERSION.fullmatch(version):
        return version
    return "h-" + hashlib.sha256(version.encode()).hexdigest()[:40]


@dataclass(slots=True)
class CacheEntry:
    """One chunk on disk: where it is, how big, whether it is checked and in use."""

    key: ChunkKey
    path: Path
    size: int
    # The SHA-256 the bytes were checked against; None until checked (found at start).
    sha256: str | None
    pins: int = 0
    # The chunk file kept open between hits (see ``OPEN_FILES``), shared by leases.
    fd: int | None = None
    # Out of the index (evicted, replaced): the descriptor closes with the last lease.
    removed: bool = False

    @property
    def verified(self) -> bool:
        return self.sha256 is not None


@dataclass(slots=True)
class MemoryEntry:
    data: Buffer
    pins: int = 0


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    memory_hits: int = 0
    misses: int = 0
    fills: int = 0
    not_stored: int = 0
    evictions: int = 0
    memory_evictions: int = 0
    # Chunks copied from disk into the memory tier (see edge_node.admission).
    promotions: int = 0
    integrity_failures: int = 0
    bytes_stored: int = 0
    prefetches: int = 0
    # Fills started by a client's request and by warm work (replication); with
    # ``prefetches`` they tell apart why the origin was read.
    demand_fills: int = 0
    warm_fills: int = 0
    # Chunks without a known hash that verified by having theirs recorded or matched.
    hashes_learned: int = 0


# -- streaming fills ---------------------------------------------------------------


class FillBuffer:
    """One attempt at one chunk: a preallocated buffer filled by concurrent parts.

    ``parts`` are ``(start, stop)`` ranges tiling the chunk, in the order they are
    requested (``edge_node.fill_parts``); each part's bytes land in order from its
    start, so what is in place is, per part, a prefix of it. With ``lead``, the
    first part is requested alone until its first bytes arrive (a reader waits for it).
    """

    def __init__(self, length: int, parts: list[tuple[int, int]], *, lead: bool = False) -> None:
        check_tiling(length, parts)
        self.length = length
        self.lead = lead and len(parts) > 1
        self.data = zeroed(length)
        self.view = memoryview(self.data)
        self.parts = parts
        self.done = [0] * len(parts)
        # Part indices by start offset, to find the part holding a position.
        self._by_start = sorted(range(len(parts)), key=lambda i: parts[i][0])
        self._starts = [parts[i][0] for i in self._by_start]
        self.outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.outcome.add_done_callback(_retrieve_future)
        self._wake = asyncio.Event()

    @property
    def failed(self) -> bool:
        return self.outcome.done() and self.outcome.exception() is not None

    def progress(self, part: int, count: int) -> None:
        self.done[part] += count
        self.notify()

    def notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def changed(self) -> None:
        await self._wake.wait()

    def available(self, pos: int) -> int:
        """The end of the bytes in place from ``pos`` on (``pos`` if none yet): through
        the part holding ``pos`` and on into the next ones while each is complete."""
        end = pos
        order = bisect.bisect_right(self._starts, pos) - 1
        while 0 <= order < len(self._by_start):
            part = self._by_start[order]
            start, stop = self.parts[part]
            filled = start + self.done[part]
            if filled <= end:
                break
            end = filled
            if filled < stop:
                break
            order += 1
        return end

    def prefix(self) -> int:
        return self.available(0)

    def succeed(self) -> None:
        if not self.outcome.done():
            self.outcome.set_result(None)
        self.notify()

    def fail(self, exc: BaseException) -> None:
        if not self.outcome.done():
            if not isinstance(exc, Exception):
                exc = Unavailable("the chunk fill was stopped")
            self.outcome.set_exception(exc)
        self.notify()


def zeroed(length: int) -> Buffer:
    """A writable buffer of ``length`` bytes whose pages the kernel supplies as they
    are first written. ``bytearray(n)`` zeroes all of them up front: for a 4 MiB
    chunk that is about a thousand page faults (milliseconds on a VM) before the
    first origin GET could start, where the fill needs only the first part's."""
    if length == 0:
        return bytearray()
    return mmap.mmap(-1, length)


def _held(reservation: asyncio.Task[bool]) -> bool:
    """Whether a finished disk reservation set bytes aside."""
    if not reservation.done() or reservation.cancelled():
        return False
    return reservation.exception() is None and reservation.result()


def _retrieve_future(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


@dataclass(slots=True)
class _Fill:
    """The one in-flight fill of a chunk; waiters attach to its current buffer."""

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


# -- leases ------------------------------------------------------------------------


class ChunkLease:
    """A chunk held for serving; ``blocks`` yields its bytes, release it via the cache."""

    key: ChunkKey
    size: int
    # A descriptor for kernel sendfile; only disk leases have one.
    fd: int | None = None
    released: bool = False

    async def ready(self, offset: int, length: int) -> None:
        """Return once the first of ``length`` bytes at ``offset`` can be sent (raise
        if it never will)."""

    def blocks(self, offset: int, length: int) -> AsyncGenerator[memoryview | bytes, None]:
        raise TypeError("abstract")

    def now(self, offset: int, length: int) -> memoryview | bytes | None:
        """The ``length`` bytes at ``offset`` in one block, if they fit one write and
        nothing has to be waited for (no async generator for a small hit); else None."""
        return None

    def close(self) -> None:
        """Give back what the lease holds (the cache unpins)."""


class DiskLease(ChunkLease):
    """A chunk file read through the entry's shared descriptor (the cache closes it)."""

    def __init__(self, entry: CacheEntry, fd: int, *, promote: bool = False) -> None:
        self.entry = entry
        self.key = entry.key
        self.size = entry.size
        self.fd = fd
        # Whether the reader would rather have had it in memory (the cache then
        # considers promoting the chunk when the lease is released).
        self.promote = promote
        self.sent = 0

    async def blocks(self, offset: int, length: int) -> AsyncGenerator[memoryview | bytes, None]:
        fd = self.fd
        assert fd is not None
        sent = 0
        while sent < length:
            size = min(BLOCK, length - sent)
            data = await pread(fd, size, offset + sent)
            if len(data) != size:
                raise IntegrityError("a cached chunk is shorter than recorded", key=self.key)
            self.sent += size
            yield data
            sent += size

    def now(self, offset: int, length: int) -> memoryview | bytes | None:
        if length > BLOCK or self.fd is None:
            return None
        data = read_if_cached(self.fd, length, offset)
        if data is not None:
            self.sent += length
        return data

    def close(self) -> None:
        self.fd = None  # the entry's, not ours to close


class MemoryLease(ChunkLease):
    def __init__(self, key: ChunkKey, entry: MemoryEntry) -> None:
        self.key = key
        self.entry = entry
        self.size = len(entry.data)
        self._view = memoryview(entry.data)

    async def blocks(self, offset: int, length: int) -> AsyncGenerator[memoryview | bytes, None]:
        # Slices of the stored buffer: no copy before the socket write.
        end = offset + length
        for start in range(offset, end, BLOCK):
            yield self._view[start : min(end, start + BLOCK)]

    def now(self, offset: int, length: int) -> memoryview | bytes | None:
        return self._view[offset : offset + length] if length <= BLOCK else None


class StreamLease(ChunkLease):
    """Bytes of a fill in progress, sent as they arrive (last byte after verification)."""

    def __init__(self, key: ChunkKey, buffer: FillBuffer) -> None:
        self.key = key
        self.size = buffer.length
        self.buffer = buffer

    async def ready(self, offset: int, length: int) -> None:
        buffer = self.buffer
        if length <= 1:
            # That one byte is the held-back last one: it waits for verification, so
            # the answer's status can still tell a failed check (see ``blocks``).
            await asyncio.shield(buffer.outcome)
            return
        while buffer.available(offset) <= offset:
            if buffer.outcome.done():
                await buffer.outcome  # raises the fill's error
                return
            await buffer.changed()

    async def blocks(self, offset: int, length: int) -> AsyncGenerator[memoryview | bytes, None]:
        buffer = self.buffer
        end = offset + length
        hold = end - 1
        pos = offset
        while pos < hold:
            avail = min(buffer.available(pos), hold, pos + BLOCK)
            if avail > pos:
                yield buffer.view[pos:avail]
                pos = avail
            elif buffer.outcome.done():
                await buffer.outcome
                raise Unavailable("the chunk fill ended without the bytes", key=self.key)
            else:
                await buffer.changed()
        # The held-back byte goes out only for a verified chunk (see module docstring).
        await asyncio.shield(buffer.outcome)
        yield buffer.view[hold:end]


# -- the cache ---------------------------------------------------------------------


class _ByteBudget:
    """Bytes that fill buffers may hold at once (release never waits, so it is
    safe in ``finally`` blocks of cancelled tasks)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._wake = asyncio.Event()

    def _clamp(self, count: int) -> int:
        # A chunk larger than the whole budget may still fill, alone.
        return min(count, self.total)

    def try_acquire(self, count: int) -> bool:
        count = self._clamp(count)
        if self.used + count > self.total:
            return False
        self.used += count
        return True

    async def acquire(self, count: int) -> None:
        while not self.try_acquire(count):
            await self._wake.wait()

    def release(self, count: int) -> None:
        self.used -= self._clamp(count)
        self._wake.set()
        self._wake = asyncio.Event()


class ChunkCache:
    """Chunks in memory and on disk, filled by streaming, collapsed, verified fills."""

    def __init__(
        self, root: Path, origin: Origin, config: CacheConfig, hashes: HashSettler | None = None
    ) -> None:
        self._root = root
        self._chunks = root / "chunks"
        self._tmp = root / "tmp"
        self.config = config
        self.max_bytes = config.max_bytes
        self._origin = origin
        # Without a settler, chunks of unknown hash cannot be served (fail closed).
        self._hashes = hashes
        self._index: OrderedDict[ChunkKey, CacheEntry] = OrderedDict()
        self._memory: OrderedDict[ChunkKey, MemoryEntry] = OrderedDict()
        self._inflight: dict[ChunkKey, _Fill] = {}
        self._promoting: set[ChunkKey] = set()
        # Entries with an open descriptor, least recently used first (by id: an
        # entry replaced under the same key may still be leased).
        self._open: OrderedDict[int, CacheEntry] = OrderedDict()
        self._admission = MemoryAdmission(config.memory_bytes)
        self._used = 0
        self._reserved = 0
        self._memory_used = 0
        self._fill_budget: _ByteBudget | None = None
        self._prefetching = 0
        # Filesystem numbers from the last statvfs (refreshed on reservations and
        # by the maintenance loop).
        self._disk_avail = 0
        self._disk_total = 0
        self._evicting: asyncio.Task[None] | None = None
        self.stats = CacheStats()
        self._background = TaskSet()

    # -- start and stop ----------------------------------------------------------

    async def open(self) -> None:
        """Rebuild the index from disk (oldest first, so LRU order survives restarts)."""
        found = await asyncio.to_thread(self._scan)
        self._fill_budget = _ByteBudget(self.config.fill_memory_bytes)
        self._index.clear()
        self._used = 0
        for key, path, size in found:
            self._index[key] = CacheEntry(key=key, path=path, size=size, sha256=None)
            self._used += size
        await self._refresh_disk()
        log.info("chunk cache opened chunks=%d bytes=%d", len(found), self._used)
        await self._evict_down_to(self._target_after_eviction(), reason="start")
        self._background.spawn(self._maintain_forever(), name="cache-maintain")

    def _scan(self) -> list[tuple[ChunkKey, Path, int]]:
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._chunks.mkdir(parents=True, exist_ok=True)
        found: list[tuple[float, ChunkKey, Path, int]] = []
        for path in self._chunks.glob("*/*/*/*"):
            try:
                file_id = check_id(path.parent.parent.name)
                index = int(path.name)
                stat = path.stat()
            except (ValueError, OSError, InvalidInput):
                log.warning("removing stray file from the chunk cache: %s", path)
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            if path.parent.parent.parent.name != file_id[:2] or str(index) != path.name:
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            found.append((stat.st_mtime, (file_id, path.parent.name, index), path, stat.st_size))
        found.sort(key=lambda item: item[0])
        return [(key, path, size) for _, key, path, size in found]

    async def close(self) -> None:
        """Cancel fills, read-ahead and maintenance (at shutdown)."""
        tasks = [fill.task for fill in self._inflight.values() if fill.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._background.close()
        for entry in list(self._open.values()):
            self._close_fd(entry)

    # -- accounting --------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        """Bytes of chunks on disk."""
        return self._used

    @property
    def reserved_bytes(self) -> int:
        return self._reserved

    @property
    def free_bytes(self) -> int:
        """Bytes the cache may still take: under its cap and above the disk's free floor."""
        by_cap = self.max_bytes - self._used - self._reserved
        if not self._disk_total:  # statvfs unavailable: only the cap is known
            return max(0, by_cap)
        by_disk = self._disk_avail - self._reserved - self._min_free()
        return max(0, min(by_cap, by_disk))

    @property
    def disk_avail_bytes(self) -> int:
        return self._disk_avail

    @property
    def memory_bytes(self) -> int:
        return self._memory_used

    @property
    def fill_buffer_bytes(self) -> int:
        return self._fill_budget.used if self._fill_budget is not None else 0

    @property
    def chunk_count(self) -> int:
        return len(self._index)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def promoting(self) -> int:
        """Chunks being copied from disk into the memory tier."""
        return len(self._promoting)

    def hot_files(self, limit: int = 32) -> list[str]:
        """File ids of the most recently used chunks, newest first."""
        out: list[str] = []
        for key in [*reversed(self._memory), *reversed(self._index)]:
            if key[0] not in out:
                out.append(key[0])
                if len(out) >= limit:
                    break
        return out

    def contains(self, manifest: Manifest, index: int) -> bool:
        """True when the chunk is stored on disk."""
        return self._key(manifest, index) in self._index

    def in_memory(self, manifest: Manifest, index: int) -> bool:
        return self._key(manifest, index) in self._memory

    def is_filling(self, manifest: Manifest, index: int) -> bool:
        return self._key(manifest, index) in self._inflight

    def path_for(self, key: ChunkKey) -> Path:
        file_id, tag, index = key
        return self._chunks / file_id[:2] / file_id / tag / str(index)

    @staticmethod
    def _key(manifest: Manifest, index: int) -> ChunkKey:
        return (manifest.file_id, version_tag(manifest.version), index)

    def _min_free(self) -> int:
        return int(self._disk_total * self.config.min_free_ratio)

    async def _refresh_disk(self) -> None:
        try:
            info = await asyncio.to_thread(os.statvfs, self._root)
        except OSError as exc:
            log.warning("statvfs failed on the cache root: %s", exc)
            return
        self._disk_avail = info.f_bavail * info.f_frsize
        self._disk_total = info.f_blocks * info.f_frsize

    # -- serving -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lease(
        self, manifest: Manifest, index: int, *, memory: bool = True, offset: int | None = None
    ) -> AsyncIterator[ChunkLease]:
        """Hold chunk ``index`` of ``manifest`` (filling it on a miss) while in use."""
        held = await self.acquire(manifest, index, memory=memory, offset=offset)
        try:
            yield held
        finally:
            self.release(held)

    async def acquire(
        self, manifest: Manifest, index: int, *, memory: bool = True, offset: int | None = None
    ) -> ChunkLease:
        """A lease on the chunk: from memory, from disk, or streaming from its fill.

        ``memory=False`` prefers the disk copy (kernel sendfile on plain HTTP).
        ``offset`` is where in the chunk the caller will start reading: a fill this
        call starts fetches the bytes from there first (``edge_node.fill_parts``).
        Call ``release`` when done.
        """
        if not 0 <= index < len(manifest.chunks):
            raise ValueError(f"chunk {index} is outside the file")
        key = self._key(manifest, index)
        counted = False
        # A few rounds: between a fill finishing and this task resuming, an
        # explicit eviction may remove the chunk again.
        for _ in range(4):
            held = self._try_hit(key, memory=memory)
            if held is not None:
                self._admission.hit(key)
                if not counted:
                    self._count_hit(held)
                return held
            if not counted:
                self.stats.misses += 1
                counted = True
            fill = self._inflight.get(key)
            if fill is None:
                fill = self._start_fill(key, manifest, index, False, start=offset)
                self.stats.demand_fills += 1
            buffer = await self._attach(fill)
            if buffer is not None:
                return StreamLease(key, buffer)
        raise Unavailable("the chunk kept being evicted while it was requested", key=key)

    def hit(self, manifest: Manifest, index: int, *, memory: bool = True) -> ChunkLease | None:
        """A lease on the chunk if it is in memory or verified on disk, else None:
        ``acquire`` without a coroutine, for the common case of a hit."""
        if not 0 <= index < len(manifest.chunks):
            raise ValueError(f"chunk {index} is outside the file")
        key = self._key(manifest, index)
        held = self._try_hit(key, memory=memory)
        if held is not None:
            self._admission.hit(key)
            self._count_hit(held)
        return held

    def _count_hit(self, held: ChunkLease) -> None:
        self.stats.hits += 1
        if isinstance(held, MemoryLease):
            self.stats.memory_hits += 1

    def _try_hit(self, key: ChunkKey, *, memory: bool) -> ChunkLease | None:
        stored = self._memory.get(key)
        entry = self._index.get(key)
        if stored is not None and (memory or entry is None or entry.sha256 is None):
            stored.pins += 1
            self._memory.move_to_end(key)
            if entry is not None:
                self._index.move_to_end(key)
            return MemoryLease(key, stored)
        if entry is None or entry.sha256 is None:
            return None
        try:
            fd = self._entry_fd(entry)
        except FileNotFoundError:
            self._drop(key)
            return None
        entry.pins += 1
        self._index.move_to_end(key)
        return DiskLease(entry, fd, promote=memory)

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

    def release(self, lease: ChunkLease) -> None:
        if lease.released:
            return
        lease.released = True
        lease.close()
        if isinstance(lease, DiskLease | MemoryLease):
            lease.entry.pins -= 1
        if isinstance(lease, DiskLease) and lease.entry.removed and lease.entry.pins == 0:
            self._close_fd(lease.entry)
        if isinstance(lease, DiskLease) and lease.sent:
            self._admission.served_from_disk(lease.sent)
            if lease.promote:
                self._maybe_promote(lease.entry)

    async def ensure(self, manifest: Manifest, index: int) -> str:
        """Make sure the chunk is verified and kept on disk (warm work); its SHA-256.

        The hash may be one this edge has just recorded (an imported chunk), so the
        answer, not ``manifest``, is what to report.
        """
        if not 0 <= index < len(manifest.chunks):
            raise ValueError(f"chunk {index} is outside the file")
        key = self._key(manifest, index)
        for _ in range(4):
            entry = self._index.get(key)
            if entry is not None and entry.sha256 is not None:
                return entry.sha256
            fill = self._inflight.get(key)
            if fill is None:
                fill = self._start_fill(key, manifest, index, False)
                self.stats.warm_fills += 1
            assert fill.task is not None
            # shield: the work item going away must not cancel a fill others share.
            await asyncio.shield(fill.task)
            entry = self._index.get(key)
            if entry is not None and entry.sha256 is not None:
                return entry.sha256
            if entry is None and key not in self._inflight:
                raise Unavailable("no disk space to keep the chunk", key=key)
        raise Unavailable("the chunk kept being evicted while it was warmed", key=key)

    def prefetch(self, manifest: Manifest, index: int) -> bool:
        """Start filling a chunk in the background (read-ahead) if it is missing and
        there is room (fill memory, read-ahead slots); never waits, never raises."""
        if not 0 <= index < len(manifest.chunks):
            return False
        key = self._key(manifest, index)
        if key in self._inflight or key in self._memory or key in self._index:
            return False
        if self._prefetching >= self.config.max_prefetch_fills:
            return False
        budget = self._fill_budget
        if budget is None or not budget.try_acquire(manifest.chunks[index].length):
            return False
        self.stats.prefetches += 1
        self._start_fill(key, manifest, index, True)
        return True

    def _start_fill(
        self,
        key: ChunkKey,
        manifest: Manifest,
        index: int,
        prefetch: bool,
        *,
        start: int | None = None,
    ) -> _Fill:
        if start is not None and not 0 <= start < manifest.chunks[index].length:
            start = None
        fill = _Fill(prefetch=prefetch, start=start)
        if prefetch:
            self._prefetching += 1
        task = asyncio.create_task(
            self._fill(key, manifest, manifest.chunks[index], fill), name=f"fill-{index}"
        )
        fill.task = task
        self._inflight[key] = fill

        def done(_task: asyncio.Task[bool]) -> None:
            if self._inflight.get(key) is fill:
                del self._inflight[key]
            if prefetch:
                self._prefetching -= 1
            fill.notify()

        task.add_done_callback(done)
        task.add_done_callback(retrieve_exception)
        return fill

    async def _fill(self, key: ChunkKey, manifest: Manifest, chunk: ChunkInfo, fill: _Fill) -> bool:
        """Fetch, verify and store one chunk; True when it is kept on disk."""
        budget = self._fill_budget
        assert budget is not None, "open() the cache first"
        holding = fill.prefetch  # read-ahead took its share of fill memory already
        try:
            entry = self._index.get(key)
            if entry is not None and not entry.verified:
                if await self._verify_on_disk(key, entry, manifest, chunk):
                    return True
            elif entry is not None and entry.size != chunk.length:
                await self._remove(key)
            if not holding:
                await budget.acquire(chunk.length)
                holding = True
            # Disk room is set aside while the origin is read (its statvfs and any
            # eviction are thread hops the first byte need not wait for); the chunk is
            # kept only once it is, so a burst of misses still cannot pass the cap.
            reservation = asyncio.create_task(self._reserve(chunk.length))
            try:
                buffer, digest = await self._download_verified(manifest, chunk, fill)
                self._memory_put(key, buffer.data)
                self.stats.fills += 1
                stored = await self._reserved_now(reservation) and await self._store(
                    key, buffer.data
                )
            finally:
                if not reservation.done():
                    reservation.cancel()  # it adds its bytes only as it returns True
                    await asyncio.gather(reservation, return_exceptions=True)
                if _held(reservation):
                    self._reserved -= chunk.length
            if not stored:
                self.stats.not_stored += 1
                return False
            old = self._index.pop(key, None)
            if old is not None:
                self._used -= old.size
                self._retire(old)
            self._index[key] = CacheEntry(
                key=key, path=self.path_for(key), size=chunk.length, sha256=digest
            )
            self._used += chunk.length
            self.stats.bytes_stored += chunk.length
            self._maybe_start_eviction()
            return True
        finally:
            if holding:
                budget.release(chunk.length)

    @staticmethod
    async def _reserved_now(reservation: asyncio.Task[bool]) -> bool:
        try:
            return await asyncio.shield(reservation)
        except OSError as exc:
            log.warning("could not make room for a chunk: %s", exc)
            return False

    async def _store(self, key: ChunkKey, data: Buffer) -> bool:
        try:
            await asyncio.to_thread(self._write_atomic, self.path_for(key), data)
        except OSError as exc:
            # Served already; only the disk copy is lost.
            log.warning("could not store a chunk key=%s: %s", key, exc)
            return False
        return True

    async def _verify_on_disk(
        self, key: ChunkKey, entry: CacheEntry, manifest: Manifest, chunk: ChunkInfo
    ) -> bool:
        # Found on disk at start: check it once before its first use.
        digest = None
        entry.pins += 1
        try:
            if entry.size == chunk.length:
                digest = await asyncio.to_thread(_file_sha256, entry.path)
        finally:
            entry.pins -= 1
        expected = chunk.sha256
        if digest is not None and expected is None:
            # Kept before its hash reached this manifest copy: settle it like a fetch.
            with contextlib.suppress(IntegrityError):
                expected = await self._settle(manifest, chunk, digest)
        if digest is not None and digest == expected:
            if self._index.get(key) is entry:
                entry.sha256 = digest
                return True
            return False
        self.stats.integrity_failures += 1
        log.warning("cached chunk failed its SHA-256 check; refetching key=%s", key)
        await self._remove(key)
        return False

    async def _download_verified(
        self, manifest: Manifest, chunk: ChunkInfo, fill: _Fill
    ) -> tuple[FillBuffer, str]:
        """The chunk's bytes and their SHA-256, checked against the known hash, or
        against the hash the control plane holds once ours is offered (unknown hash).

        One fresh try on a mismatch: a flipped bit in transit is worth a retry, a
        wrong object at the origin is not worth more. Readers of the bad buffer fail.
        """
        expected = chunk.sha256
        for attempt in (1, 2):
            buffer = FillBuffer(
                chunk.length,
                self._parts(chunk.length, fill.start),
                lead=first_part_leads(chunk.length, fill.start, self.config.first_part_bytes),
            )
            fill.buffer = buffer
            fill.notify()
            try:
                digest = await self._download(buffer, manifest, chunk)
                if expected is None:
                    # Until the control plane answers, the held-back last byte waits.
                    expected = await self._settle(manifest, chunk, digest)
                    if digest == expected:
                        self.stats.hashes_learned += 1
                if digest != expected:
                    raise IntegrityError(
                        "origin bytes do not match the recorded SHA-256",
                        file_id=manifest.file_id,
                        chunk=chunk.index,
                    )
            except IntegrityError as exc:
                buffer.fail(exc)
                self.stats.integrity_failures += 1
                log.warning(
                    "origin bytes failed the SHA-256 check file=%s chunk=%d attempt=%d",
                    manifest.file_id,
                    chunk.index,
                    attempt,
                )
                if attempt == 2:
                    raise
                continue
            except BaseException as exc:
                buffer.fail(exc)
                raise
            buffer.succeed()
            return buffer, digest
        raise AssertionError("unreachable")

    def _parts(self, length: int, start: int | None) -> list[tuple[int, int]]:
        config = self.config
        return fill_parts(
            length,
            config.part_bytes,
            config.max_parts,
            start=start,
            first_bytes=config.first_part_bytes,
        )

    async def _settle(self, manifest: Manifest, chunk: ChunkInfo, digest: str) -> str:
        if self._hashes is None:
            raise Unavailable("the chunk's SHA-256 is unknown", chunk=chunk.index)
        return await self._hashes.settle(manifest, chunk.index, digest)

    async def _download(self, buffer: FillBuffer, manifest: Manifest, chunk: ChunkInfo) -> str:
        """Concurrent ranged reads of the parts, hashing the prefix as it grows; the
        SHA-256 of the whole chunk.

        A leading first part (a reader's offset) goes out alone, the others once its
        first bytes are in (or it has ended): requests started together share the
        origin's and the uplink's capacity, and an origin that builds each answer
        before sending it (the local stack's moto) would make the small GET wait
        for the large ones. The rest of the chunk starts one origin round trip later.
        """

        async def part(index: int, start: int, stop: int) -> None:
            await self._origin.read_into(
                manifest.bucket,
                manifest.key,
                chunk.offset + start,
                buffer.view[start:stop],
                lambda count: buffer.progress(index, count),
                version_id=manifest.version_id,
                etag=manifest.origin_etag,
            )

        tasks: list[asyncio.Task[None]] = []

        def launch(indices: range) -> None:
            for i in indices:
                start, stop = buffer.parts[i]
                if stop > start:
                    task = asyncio.create_task(part(i, start, stop))
                    task.add_done_callback(lambda _t: buffer.notify())
                    tasks.append(task)

        held = buffer.lead
        launch(range(1) if held else range(len(buffer.parts)))
        digest = hashlib.sha256()
        hashed = 0
        try:
            while hashed < buffer.length:
                if held and (buffer.done[0] > 0 or tasks[0].done()):
                    held = False
                    launch(range(1, len(buffer.parts)))
                for task in tasks:
                    if task.done() and not task.cancelled():
                        error = task.exception()
                        if error is not None:
                            raise error
                prefix = buffer.prefix()
                if prefix - hashed >= _HASH_STEP or (prefix == buffer.length and prefix > hashed):
                    # Large updates in a thread: hashlib drops the GIL, the loop keeps serving.
                    await asyncio.to_thread(digest.update, buffer.view[hashed:prefix])
                    hashed = prefix
                else:
                    await buffer.changed()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return digest.hexdigest()

    def _write_atomic(self, path: Path, data: Buffer) -> None:
        # No fsync: after a crash a damaged chunk fails its lazy SHA-256 check at
        # first use and is refetched, so durability is not worth a disk flush.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="chunk.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    # -- memory tier -------------------------------------------------------------

    def _memory_victims(self, size: int) -> list[ChunkKey] | None:
        """The least-recently-used unpinned chunks to drop to make room for ``size``
        bytes (none if there is room already); None when pins leave too little."""
        cap = self.config.memory_bytes
        if size > cap:
            return None
        victims: list[ChunkKey] = []
        room = cap - self._memory_used
        for victim_key, victim in self._memory.items():
            if room >= size:
                break
            if victim.pins == 0:
                victims.append(victim_key)
                room += len(victim.data)
        return victims if room >= size else None

    def _memory_put(
        self, key: ChunkKey, data: Buffer, *, by_frequency: bool = False
    ) -> bool:
        """Keep a chunk in memory, pushing out least-recently-used ones. A fill always
        goes in (a chunk just fetched is the likeliest next hit); a promotion only
        if the chunks it would push out were hit less often (see ``admission``)."""
        if key in self._memory:
            return False
        size = len(data)
        victims = self._memory_victims(size)
        if victims is None:
            return False
        if by_frequency and not self._admission.hotter_than(key, victims):
            return False
        for victim_key in victims:
            victim = self._memory.pop(victim_key)
            self._memory_used -= len(victim.data)
            self.stats.memory_evictions += 1
        self._memory[key] = MemoryEntry(data)
        self._memory_used += size
        return True

    def _maybe_promote(self, entry: CacheEntry) -> None:
        """Copy a chunk served from disk into the memory tier, if admitted."""
        key = entry.key
        if not self._admission.affords(entry.size) or key in self._memory:
            return
        if key in self._promoting or self._index.get(key) is not entry:
            return
        victims = self._memory_victims(entry.size)
        if victims is None or not self._admission.admits(key, entry.size, victims):
            return
        self._admission.spend(entry.size)
        self._promoting.add(key)

        async def promote() -> None:
            try:
                entry.pins += 1
                try:
                    data = await asyncio.to_thread(entry.path.read_bytes)
                finally:
                    entry.pins -= 1
                if (
                    len(data) == entry.size
                    and self._index.get(key) is entry
                    and self._memory_put(key, data, by_frequency=True)
                ):
                    self.stats.promotions += 1
            except OSError:
                pass
            finally:
                self._promoting.discard(key)

        self._background.spawn(promote(), name="cache-promote")

    # -- disk space --------------------------------------------------------------

    async def _reserve(self, size: int) -> bool:
        """Set aside disk room for a chunk (while it is fetched), evicting LRU if needed;
        False when there is no room (the chunk is served but not kept)."""
        await self._refresh_disk()
        min_free = self._min_free()

        def shortfall() -> int:
            by_cap = self._used + self._reserved + size - self.max_bytes
            if not self._disk_total:  # statvfs unavailable: only the cap is known
                return max(by_cap, 0)
            by_disk = min_free - (self._disk_avail - self._reserved - size)
            return max(by_cap, by_disk, 0)

        if shortfall() > 0 and await self._evict_bytes(shortfall()):
            await self._refresh_disk()  # what the unlinks gave back, as the disk sees it
        if shortfall() > 0:
            return False
        self._reserved += size
        return True

    def _target_after_eviction(self) -> int:
        return int(self.max_bytes * self.config.low_water)

    def _over_high_water(self) -> bool:
        if self._used > self.max_bytes * self.config.high_water:
            return True
        return self._disk_total > 0 and self._disk_avail < self._min_free()

    def _maybe_start_eviction(self) -> None:
        if self._evicting is None and self._over_high_water():
            self._evicting = self._background.spawn(self._watermark_pass(), name="cache-evict")

    async def _watermark_pass(self) -> None:
        try:
            await self._evict_down_to(self._target_after_eviction(), reason="watermark")
        finally:
            self._evicting = None

    async def _evict_down_to(self, target: int, *, reason: str) -> None:
        await self._refresh_disk()
        need = self._used - target
        if self._disk_total > 0:
            # Below the free floor: evict until the floor (plus the low-water gap) is back.
            gap = int(self.max_bytes * (self.config.high_water - self.config.low_water))
            need = max(need, self._min_free() - self._disk_avail + gap)
        if need > 0:
            freed = await self._evict_bytes(need)
            if freed:
                await self._refresh_disk()
                log.info("evicted bytes=%d reason=%s used=%d", freed, reason, self._used)

    async def _maintain_forever(self) -> None:
        """Re-read the filesystem's free space now and then (other writers share it)."""
        while True:
            await asyncio.sleep(self.config.maintain_interval)
            await self._refresh_disk()
            self._maybe_start_eviction()

    async def _evict_bytes(self, needed: int) -> int:
        """Drop least-recently-used unpinned chunks until ``needed`` bytes are freed."""
        victims: list[CacheEntry] = []
        freed = 0
        for entry in list(self._index.values()):
            if freed >= needed:
                break
            if entry.pins > 0 or entry.key in self._inflight:
                continue
            del self._index[entry.key]
            self._used -= entry.size
            freed += entry.size
            victims.append(entry)
            self._retire(entry)
        if freed < needed and self._index:  # what is left is pinned or being filled
            log.warning("chunk cache cannot free enough: the other chunks are in use")
        self.stats.evictions += len(victims)
        if victims:
            await asyncio.to_thread(_unlink_all, [v.path for v in victims])
        return freed

    async def evict_file(self, file_id: str, version: str | None = None) -> int:
        """Drop a file's chunks (one version or all); open leases keep reading."""
        tag = version_tag(version) if version is not None else None

        def match(key: ChunkKey) -> bool:
            return key[0] == file_id and (tag is None or key[1] == tag)

        for key in [k for k in self._memory if match(k)]:
            self._memory_used -= len(self._memory.pop(key).data)
        keys = [k for k in self._index if match(k)]
        for key in keys:
            await self._remove(key)
        self.stats.evictions += len(keys)
        return len(keys)

    async def _remove(self, key: ChunkKey) -> None:
        entry = self._index.pop(key, None)
        if entry is None:
            return
        self._used -= entry.size
        self._retire(entry)
        # Unlinking is safe under open leases: their descriptors keep the inode.
        await asyncio.to_thread(_unlink_all, [entry.path])

    def _drop(self, key: ChunkKey) -> None:
        entry = self._index.pop(key, None)
        if entry is not None:
            self._used -= entry.size
            self._retire(entry)

    def _retire(self, entry: CacheEntry) -> None:
        """An entry has left the index: forget its hits, close its file when unleased."""
        entry.removed = True
        self._admission.forget(entry.key)
        if entry.pins == 0:
            self._close_fd(entry)

    # -- open chunk files ----------------------------------------------------------

    def _entry_fd(self, entry: CacheEntry) -> int:
        """The entry's descriptor, opened on first use. Opened on the loop, as nginx
        does without aio: a recently used chunk's directory entry and inode are
        cached, and a thread hop costs more than the open."""
        if entry.fd is not None:
            self._open.move_to_end(id(entry))
            return entry.fd
        entry.fd = os.open(entry.path, os.O_RDONLY)
        self._open[id(entry)] = entry
        if len(self._open) > OPEN_FILES:
            for victim in list(self._open.values()):
                if len(self._open) <= OPEN_FILES:
                    break
                if victim.pins == 0 and victim is not entry:
                    self._close_fd(victim)
        return entry.fd

    def _close_fd(self, entry: CacheEntry) -> None:
        if entry.fd is not None:
            os.close(entry.fd)
            entry.fd = None
        self._open.pop(id(entry), None)


def _file_sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(MIB):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
