"""The chunk cache: verified chunk files on local disk, bounded by a byte cap.

Layout under ``ROOT``: ``chunks/FF/FILE_ID/VERSION_TAG/INDEX`` holds one chunk's
bytes, ``tmp/`` holds writes in progress (renamed into place when complete, so a
reader never sees a partial chunk). The index lives in memory and is rebuilt from
the directory tree at start.

Every chunk is checked against the manifest's SHA-256 before it is stored; chunks
found on disk at start are checked on first use. Concurrent misses for one chunk
share one fill task (one origin read). Serving pins a chunk (and holds an open
file descriptor), so LRU eviction skips it and an explicit eviction cannot pull
the bytes from under a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from fsnode_core.errors import IntegrityError, InvalidInput, Unavailable
from fsnode_core.ids import check_id

from edge_node.background import TaskSet, retrieve_exception
from edge_node.manifests import ChunkInfo, Manifest

log = logging.getLogger(__name__)

# (file_id, version tag, chunk index): a new version is a new key, so a chunk of
# an overwritten file can never be served for the new version.
ChunkKey = tuple[str, str, int]
# Reads one chunk's bytes from the origin.
ChunkFetcher = Callable[[Manifest, ChunkInfo], Awaitable[bytes]]

_SAFE_VERSION = re.compile(r"[0-9A-Za-z_-]{1,64}")


def version_tag(version: str) -> str:
    """A path-safe directory name for a version string (hashed when not plain)."""
    if _SAFE_VERSION.fullmatch(version):
        return version
    return "h-" + hashlib.sha256(version.encode()).hexdigest()[:40]


@dataclass(slots=True)
class CacheEntry:
    """One stored chunk: where it is, how big, and whether it is checked and in use."""

    key: ChunkKey
    path: Path
    size: int
    verified: bool
    pins: int = 0


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    fills: int = 0
    evictions: int = 0
    integrity_failures: int = 0
    bytes_stored: int = 0


@dataclass(slots=True)
class ChunkLease:
    """A pinned, verified chunk with an open descriptor; read it with ``read``."""

    entry: CacheEntry
    fd: int
    released: bool = field(default=False)

    async def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` within the chunk (in a worker thread)."""
        data = await asyncio.to_thread(os.pread, self.fd, length, offset)
        if len(data) != length:
            raise IntegrityError("a cached chunk is shorter than recorded", key=self.entry.key)
        return data


class ChunkCache:
    """Chunks on disk with an LRU byte cap, request collapsing and SHA-256 checks."""

    def __init__(self, root: Path, max_bytes: int, fetch: ChunkFetcher) -> None:
        if max_bytes <= 0:
            raise ValueError("the cache needs a positive byte cap")
        self._root = root
        self._chunks = root / "chunks"
        self._tmp = root / "tmp"
        self.max_bytes = max_bytes
        self._fetch = fetch
        self._index: OrderedDict[ChunkKey, CacheEntry] = OrderedDict()
        self._inflight: dict[ChunkKey, asyncio.Task[CacheEntry]] = {}
        self._used = 0
        self.stats = CacheStats()
        self._background = TaskSet()

    # -- start -------------------------------------------------------------------

    async def open(self) -> None:
        """Rebuild the index from disk (oldest first, so LRU order survives restarts)."""
        found = await asyncio.to_thread(self._scan)
        self._index.clear()
        self._used = 0
        for key, path, size in found:
            self._index[key] = CacheEntry(key=key, path=path, size=size, verified=False)
            self._used += size
        log.info("chunk cache opened chunks=%d bytes=%d", len(found), self._used)
        await self._evict_to_fit(0)

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

    # -- accounting --------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        return self._used

    @property
    def free_bytes(self) -> int:
        return max(0, self.max_bytes - self._used)

    @property
    def chunk_count(self) -> int:
        return len(self._index)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def hot_files(self, limit: int = 32) -> list[str]:
        """File ids of the most recently used chunks, newest first."""
        out: list[str] = []
        for file_id, _tag, _index in reversed(self._index):
            if file_id not in out:
                out.append(file_id)
                if len(out) >= limit:
                    break
        return out

    def contains(self, manifest: Manifest, index: int) -> bool:
        return self._key(manifest, index) in self._index

    def path_for(self, key: ChunkKey) -> Path:
        file_id, tag, index = key
        return self._chunks / file_id[:2] / file_id / tag / str(index)

    @staticmethod
    def _key(manifest: Manifest, index: int) -> ChunkKey:
        return (manifest.file_id, version_tag(manifest.version), index)

    # -- serving -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lease(self, manifest: Manifest, index: int) -> AsyncIterator[ChunkLease]:
        """Pin chunk ``index`` of ``manifest`` (filling it on a miss) while in use."""
        held = await self.acquire(manifest, index)
        try:
            yield held
        finally:
            self.release(held)

    async def acquire(self, manifest: Manifest, index: int) -> ChunkLease:
        """A pinned lease on a verified chunk; call ``release`` when done."""
        key = self._key(manifest, index)
        counted = False
        # A few rounds: between a fill finishing and this task resuming, an
        # explicit eviction may remove the chunk again.
        for _ in range(4):
            entry = self._index.get(key)
            if entry is not None and entry.verified:
                if not counted:
                    self.stats.hits += 1
                entry.pins += 1
                self._index.move_to_end(key)
                try:
                    fd = await asyncio.to_thread(os.open, entry.path, os.O_RDONLY)
                except FileNotFoundError:
                    entry.pins -= 1
                    self._drop(key)
                    continue
                except BaseException:
                    entry.pins -= 1
                    raise
                return ChunkLease(entry=entry, fd=fd)
            if not counted:
                self.stats.misses += 1
                counted = True
            await self.ensure(manifest, index)
        raise Unavailable("the chunk kept being evicted while it was requested", key=key)

    def release(self, lease: ChunkLease) -> None:
        if lease.released:
            return
        lease.released = True
        os.close(lease.fd)
        lease.entry.pins -= 1
        if self._used > self.max_bytes and lease.entry.pins == 0:
            # Chunks stored while everything else was pinned left us over the cap.
            self._background.spawn(self._evict_to_fit(0), name="cache-evict")

    async def ensure(self, manifest: Manifest, index: int) -> CacheEntry:
        """Make sure the chunk is stored and verified (one shared fill per chunk)."""
        if not 0 <= index < len(manifest.chunks):
            raise ValueError(f"chunk {index} is outside the file")
        key = self._key(manifest, index)
        entry = self._index.get(key)
        if entry is not None and entry.verified:
            return entry
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fill(key, manifest, manifest.chunks[index]))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
            task.add_done_callback(retrieve_exception)
        # shield: a client that goes away must not cancel the fill others await.
        return await asyncio.shield(task)

    def prefetch(self, manifest: Manifest, index: int) -> None:
        """Start filling a chunk in the background (read-ahead); never raises."""
        if not 0 <= index < len(manifest.chunks):
            return
        key = self._key(manifest, index)
        entry = self._index.get(key)
        if (entry is not None and entry.verified) or key in self._inflight:
            return
        task = asyncio.create_task(self._fill(key, manifest, manifest.chunks[index]))
        self._inflight[key] = task
        task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        task.add_done_callback(retrieve_exception)

    async def _fill(self, key: ChunkKey, manifest: Manifest, chunk: ChunkInfo) -> CacheEntry:
        entry = self._index.get(key)
        if entry is not None and not entry.verified:
            # Found on disk at start: check it once before its first use.
            entry.pins += 1
            try:
                ok = entry.size == chunk.length and await asyncio.to_thread(
                    _file_sha256_matches, entry.path, chunk.sha256
                )
            finally:
                entry.pins -= 1
            if ok:
                entry.verified = True
                return entry
            self.stats.integrity_failures += 1
            log.warning("cached chunk failed its SHA-256 check; refetching key=%s", key)
            await self._remove(key)
        elif entry is not None and entry.size != chunk.length:
            await self._remove(key)

        data = await self._fetch_verified(manifest, chunk)
        path = self.path_for(key)
        await self._evict_to_fit(len(data))
        await asyncio.to_thread(self._write_atomic, path, data)
        old = self._index.pop(key, None)
        if old is not None:
            self._used -= old.size
        entry = CacheEntry(key=key, path=path, size=len(data), verified=True)
        self._index[key] = entry
        self._used += entry.size
        self.stats.fills += 1
        self.stats.bytes_stored += entry.size
        return entry

    async def _fetch_verified(self, manifest: Manifest, chunk: ChunkInfo) -> bytes:
        # One refetch on a mismatch: a flipped bit in transit is worth a retry, a
        # wrong object at the origin is not worth more.
        for attempt in (1, 2):
            data = await self._fetch(manifest, chunk)
            digest = await asyncio.to_thread(_sha256, data)
            if digest == chunk.sha256 and len(data) == chunk.length:
                return data
            self.stats.integrity_failures += 1
            log.warning(
                "origin bytes failed the SHA-256 check file=%s chunk=%d attempt=%d",
                manifest.file_id,
                chunk.index,
                attempt,
            )
        raise IntegrityError(
            "origin bytes do not match the recorded SHA-256",
            file_id=manifest.file_id,
            chunk=chunk.index,
        )

    def _write_atomic(self, path: Path, data: bytes) -> None:
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

    # -- eviction ----------------------------------------------------------------

    async def _evict_to_fit(self, incoming: int) -> None:
        """Drop least-recently-used unpinned chunks until ``incoming`` more bytes fit."""
        victims: list[CacheEntry] = []
        needed = self._used + incoming - self.max_bytes
        if needed <= 0:
            return
        for entry in list(self._index.values()):
            if needed <= 0:
                break
            if entry.pins > 0 or entry.key in self._inflight:
                continue
            del self._index[entry.key]
            self._used -= entry.size
            needed -= entry.size
            victims.append(entry)
        if needed > 0:
            log.warning("chunk cache over its cap: every other chunk is in use")
        self.stats.evictions += len(victims)
        if victims:
            await asyncio.to_thread(_unlink_all, [v.path for v in victims])

    async def close(self) -> None:
        """Cancel background fills and evictions (at shutdown)."""
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        await self._background.close()

    async def evict_file(self, file_id: str, version: str | None = None) -> int:
        """Drop a file's chunks (one version or all); open leases keep reading."""
        tag = version_tag(version) if version is not None else None
        keys = [k for k in self._index if k[0] == file_id and (tag is None or k[1] == tag)]
        for key in keys:
            await self._remove(key)
        self.stats.evictions += len(keys)
        return len(keys)

    async def _remove(self, key: ChunkKey) -> None:
        entry = self._index.pop(key, None)
        if entry is None:
            return
        self._used -= entry.size
        # Unlinking is safe under open leases: their descriptors keep the inode.
        await asyncio.to_thread(_unlink_all, [entry.path])

    def _drop(self, key: ChunkKey) -> None:
        entry = self._index.pop(key, None)
        if entry is not None:
            self._used -= entry.size


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256_matches(path: Path, expected: str) -> bool:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1024 * 1024):
                digest.update(block)
    except FileNotFoundError:
        return False
    return digest.hexdigest() == expected


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
