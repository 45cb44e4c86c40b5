"""File manifests: what the control plane knows about a file version (size, chunk
hashes, origin location), cached in memory and on disk so files already seen keep
serving while the control plane is down.

A chunk's SHA-256 may be unknown (``None``): an imported S3 object is hashed by
the first edge that fetches it, which records the hash with the control plane
and then learns it here (``ManifestStore.learn_hash``), so later fills and a
restart check against it without asking again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from fsnode_core.chunks import chunk_bounds, chunk_count
from fsnode_core.errors import FsnodeError, Gone, NotFound, Unauthorized, Unavailable
from fsnode_core.ids import check_id

from edge_node.background import retrieve_exception

log = logging.getLogger(__name__)

# Statuses that mean "not servable": the file was never finished, or is gone.
_NOT_READY = frozenset({"pending", "uploading", "importing"})
_GONE = frozenset({"deleted", "deleting", "expired", "gone"})
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    index: int
    offset: int
    length: int
    # None until someone has hashed the chunk (an imported object): see the module doc.
    sha256: str | None


@dataclass(frozen=True, slots=True)
class Manifest:
    """One version of one file, as in docs/PROTOCOL.md (Manifest)."""

    file_id: str
    version: str
    size: int
    content_type: str
    etag: str
    last_modified: int
    chunk_size: int
    bucket: str
    key: str
    status: str
    chunks: tuple[ChunkInfo, ...]
    # The file's name (the last segment of its path; display only).
    name: str = ""
    # "upload" (an object at a key only the control plane writes) or "import" (an
    # object someone else owns, which may be replaced under the same key).
    source: str = "upload"
    # The S3 object version an import is pinned to (None: an upload, or no versioning).
    version_id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Validate a manifest; any inconsistency is the control plane's fault (503)."""
        try:
            size = int(data["size"])
            chunk_size = int(data["chunk_size"])
            chunks = tuple(
                ChunkInfo(
                    index=int(c["index"]),
                    offset=int(c["offset"]),
                    length=int(c["length"]),
                    sha256=None if c.get("sha256") is None else str(c["sha256"]).lower(),
                )
                for c in data["chunks"]
            )
            manifest = cls(
                file_id=check_id(str(data["file_id"]), "file_id"),
                version=str(data["version"]),
                size=size,
                content_type=str(data.get("content_type") or "application/octet-stream"),
                etag=str(data.get("etag") or ""),
                last_modified=int(float(data.get("last_modified") or 0)),
                chunk_size=chunk_size,
                bucket=str(data["bucket"]),
                key=str(data["key"]),
                status=str(data.get("status") or "ready"),
                chunks=tuple(sorted(chunks, key=lambda c: c.index)),
                name=str(data.get("name") or ""),
                source=str(data.get("source") or "upload"),
                version_id=str(data["version_id"]) if data.get("version_id") else None,
            )
            manifest._check_chunks()
        except (KeyError, TypeError, ValueError, FsnodeError) as exc:
            raise Unavailable("the control plane sent a malformed manifest") from exc
        return manifest

    def _check_chunks(self) -> None:
        # Chunk arithmetic is shared with the control plane (fsnode_core.chunks);
        # a manifest that disagrees with it would make us serve wrong bytes.
        if len(self.chunks) != chunk_count(self.size, self.chunk_size):
            raise ValueError("manifest chunk count does not match its size")
        for expected, chunk in enumerate(self.chunks):
            offset, length = chunk_bounds(expected, self.size, self.chunk_size)
            if (chunk.index, chunk.offset, chunk.length) != (expected, offset, length):
                raise ValueError(f"manifest chunk {chunk.index} has wrong bounds")
            if chunk.sha256 is not None and not _SHA256.fullmatch(chunk.sha256):
                raise ValueError(f"manifest chunk {chunk.index} has a malformed SHA-256")

    def to_dict(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "version": self.version,
            "size": self.size,
            "content_type": self.content_type,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "chunk_size": self.chunk_size,
            "bucket": self.bucket,
            "key": self.key,
            "status": self.status,
            "name": self.name,
            "source": self.source,
            "version_id": self.version_id,
            "chunks": [
                {"index": c.index, "offset": c.offset, "length": c.length, "sha256": c.sha256}
                for c in self.chunks
            ],
        }

    @property
    def origin_etag(self) -> str | None:
        """The ETag origin reads must match (If-Match), if any. An import's key belongs
        to someone else and may get another object; an upload's key is written once,
        by the control plane, so it needs no check (and other origins, such as a
        static server in a benchmark, keep their own ETags)."""
        return (self.etag or None) if self.source == "import" else None

    def with_hashes(self, known: Mapping[int, str]) -> Manifest:
        """This manifest with the unknown chunk hashes that ``known`` has filled in."""
        if not any(c.sha256 is None and c.index in known for c in self.chunks):
            return self
        chunks = tuple(
            replace(c, sha256=known[c.index])
            if c.sha256 is None and c.index in known
            else c
            for c in self.chunks
        )
        return replace(self, chunks=chunks)

    def known_hashes(self) -> dict[int, str]:
        return {c.index: c.sha256 for c in self.chunks if c.sha256 is not None}

    def check_servable(self) -> None:
        status = self.status.lower()
        if status in _GONE:
            raise Gone("the file has been deleted", file_id=self.file_id)
        if status in _NOT_READY:
            raise NotFound("the file is not ready yet", file_id=self.file_id)


class ManifestSource(Protocol):
    """Where manifests come from (the control plane client implements this)."""

    async def fetch_manifest(self, file_id: str) -> Manifest: ...


@dataclass(slots=True)
class _Copy:
    """A cached manifest and what this process knows about how current it is."""

    manifest: Manifest
    # loop-monotonic time the control plane last answered with it (-inf: never).
    checked_at: float
    # Served without asking first. False for a copy read from disk (its age is
    # unknown) and for every copy after the node registered again (it may have
    # missed an evict meant for its old identity): the next lookup asks, once.
    trusted: bool
    # No background refresh before this time (set after one failed).
    retry_at: float = 0.0


def _may_fall_back(fetch: asyncio.Task[Manifest]) -> bool:
    """Whether a disk copy may still stand in for this lookup's answer: not once the
    control plane has answered (a manifest, or that the file is gone)."""
    if not fetch.done():
        return True
    return not fetch.cancelled() and isinstance(fetch.exception(), (Unavailable, Unauthorized))


class ManifestStore:
    """Manifests by file id: memory first, then the source, then the disk copy.

    Stale-while-revalidate: a version's bytes never change (a new version is a new
    cache key), so a copy this process has checked serves at once, however old;
    once it is older than ``fresh_seconds`` a lookup also starts a refresh in the
    background (one per file, at most ``max_refreshes`` at once). So a deletion or
    a new version reaches the edge within about one refresh period of traffic, and
    a slow or dead control plane never delays a hit. A refresh that answers
    404/410 drops the copy at once: later requests ask again and get the error.
    (Deletions also arrive as evict work, which drops the copy sooner.)

    A file never seen, or a copy not trusted yet (see ``_Copy.trusted``), waits for
    the control plane; if it cannot answer, the copy serves (static stability) and
    is trusted from then on. Chunk hashes are only ever learned, never forgotten:
    a refetched manifest of the same version keeps the hashes this edge has
    recorded, even if the answer was read before the record landed.
    """

    def __init__(
        self,
        source: ManifestSource,
        state_dir: Path,
        fresh_seconds: float = 30.0,
        *,
        max_refreshes: int = 8,
        retry_seconds: float = 5.0,
    ) -> None:
        self._source = source
        self._dir = state_dir / "manifests"
        self._fresh = fresh_seconds
        self._max_refreshes = max_refreshes
        self._retry = retry_seconds
        self._memory: dict[str, _Copy] = {}
        self._inflight: dict[str, asyncio.Task[Manifest]] = {}
        # Every lookup task, including ones ``forget`` detached: strong references
        # (the loop keeps only weak ones), cancelled by ``close``.
        self._tasks: set[asyncio.Task[Manifest]] = set()
        self._refreshing: set[str] = set()  # files whose refresh runs in the background
        # Disk copies are written behind the answers, by one writer task that takes
        # what memory holds when it gets to a file, so the disk copy ends up as the
        # latest manifest (learned hashes included) and no request waits for a write.
        self._unwritten: dict[str, None] = {}  # file ids, in the order they changed
        self._writer: asyncio.Task[None] | None = None

    async def get(self, file_id: str, version: str | None) -> Manifest:
        """The manifest of ``file_id`` if its current version is ``version`` (any
        version when ``version`` is None: a share without a pin serves the current one).

        Raises Gone when the file has moved on to another version (the share names
        a superseded one), NotFound/Gone when the control plane says so, and
        Unavailable when it cannot answer and no copy is cached.
        """
        manifest = self.fresh(file_id, version)
        if manifest is not None:
            return manifest
        copy = self._memory.get(file_id)
        # Ask the control plane first, then look for a disk copy while it answers: a
        # file never seen (the cold path) waits for one request, not a disk read too.
        fetch = self._fetch_task(file_id)
        if copy is None:
            disk = await asyncio.to_thread(self._read_disk, file_id)
            copy = self._memory.get(file_id)  # the answer may have landed meanwhile
            if copy is None and disk is not None and _may_fall_back(fetch):
                copy = self._memory[file_id] = _Copy(
                    disk, checked_at=float("-inf"), trusted=False
                )
        usable = copy is not None and version in (None, copy.manifest.version)
        try:
            manifest = await asyncio.shield(fetch)
        except (Unavailable, Unauthorized) as exc:
            # Unauthorized: this node's registration is being replaced; not the file's fault.
            if copy is None or not usable:
                if isinstance(exc, Unauthorized):
                    raise Unavailable("the control plane does not accept this node now") from exc
                raise
            log.warning("control plane unavailable; serving cached manifest file=%s", file_id)
            # From now on it serves without waiting; background refreshes keep asking.
            copy.trusted = True
            copy.retry_at = time.monotonic() + self._retry
            manifest = copy.manifest
        if version is not None and manifest.version != version:
            raise Gone(
                "the share URL names a version the file no longer has",
                file_id=file_id,
                version=version,
            )
        manifest.check_servable()
        return manifest

    def fresh(self, file_id: str, version: str | None) -> Manifest | None:
        """What ``get`` answers when it needs no I/O (a trusted copy of the wanted
        version, refreshed in the background once stale), else None: the hit path
        skips a coroutine with it."""
        copy = self._memory.get(file_id)
        if copy is None or not copy.trusted:
            return None
        manifest = copy.manifest
        if version is not None and manifest.version != version:
            return None  # ``get`` asks: the file may have moved on
        if time.monotonic() - copy.checked_at >= self._fresh:
            self._revalidate(file_id, copy)
        manifest.check_servable()
        return manifest

    async def refresh(self, file_id: str) -> Manifest:
        """The control plane's manifest now, whatever is cached (after a hash conflict)."""
        return await self._fetch(file_id)

    def peek(self, file_id: str) -> Manifest | None:
        """The cached manifest, if any, without I/O."""
        copy = self._memory.get(file_id)
        return copy.manifest if copy else None

    async def learn_hash(self, file_id: str, version: str, index: int, sha256: str) -> None:
        """Keep a chunk hash the control plane has just confirmed (memory and disk)."""
        copy = self._memory.get(file_id)
        if copy is None or copy.manifest.version != version:
            return
        manifest = copy.manifest.with_hashes({index: sha256})
        if manifest is copy.manifest:
            return
        copy.manifest = manifest
        self._persist(file_id)

    def forget(self, file_id: str) -> None:
        """Drop the copy (memory and disk); a lookup in flight will not store its answer."""
        self._memory.pop(file_id, None)
        self._inflight.pop(file_id, None)
        self._unwritten.pop(file_id, None)
        self._unlink_disk(file_id)

    def distrust_all(self) -> None:
        """Check every cached manifest with the control plane before it serves again
        (the node registered again: work for its old identity never arrives)."""
        for copy in self._memory.values():
            copy.trusted = False

    async def flush(self) -> None:
        """Wait until the disk copies match memory (the writer has caught up)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def close(self) -> None:
        """Stop lookups; finish the disk writes (learned hashes must survive a restart)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.flush()

    def _revalidate(self, file_id: str, copy: _Copy) -> None:
        """Start a background refresh of a stale copy, unless one is running (for this
        file, or already as many as allowed) or the last one failed just now."""
        if file_id in self._inflight or len(self._refreshing) >= self._max_refreshes:
            return
        if copy.retry_at > time.monotonic():
            return
        self._refreshing.add(file_id)
        self._start_fetch(file_id).add_done_callback(
            lambda task: self._refreshed(file_id, task)
        )

    def _refreshed(self, file_id: str, task: asyncio.Task[Manifest]) -> None:
        self._refreshing.discard(file_id)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, (NotFound, Gone)):
            log.info("file is gone; its cached manifest no longer serves file=%s", file_id)
            return  # ``_fetch_and_store`` dropped the copy
        copy = self._memory.get(file_id)
        if copy is not None:
            copy.retry_at = time.monotonic() + self._retry
        log.warning("manifest refresh failed (%s); serving the cached copy file=%s", exc, file_id)

    async def _fetch(self, file_id: str) -> Manifest:
        return await asyncio.shield(self._fetch_task(file_id))

    def _fetch_task(self, file_id: str) -> asyncio.Task[Manifest]:
        # Collapse concurrent lookups of one file into one control-plane call.
        return self._inflight.get(file_id) or self._start_fetch(file_id)

    def _start_fetch(self, file_id: str) -> asyncio.Task[Manifest]:
        task = asyncio.create_task(self._fetch_and_store(file_id))
        self._inflight[file_id] = task
        self._tasks.add(task)

        def done(finished: asyncio.Task[Manifest]) -> None:
            self._tasks.discard(finished)
            if self._inflight.get(file_id) is finished:
                del self._inflight[file_id]
            retrieve_exception(finished)

        task.add_done_callback(done)
        return task

    async def _fetch_and_store(self, file_id: str) -> Manifest:
        try:
            manifest = await self._source.fetch_manifest(file_id)
        except (NotFound, Gone):
            if self._current_fetch(file_id):
                self.forget(file_id)
            raise
        if manifest.file_id != file_id:
            raise Unavailable("the control plane answered with another file's manifest")
        if not self._current_fetch(file_id):
            # Forgotten meanwhile (an evict): this answer may predate the deletion.
            return manifest
        copy = self._memory.get(file_id)
        if copy is not None and copy.manifest.version == manifest.version:
            manifest = manifest.with_hashes(copy.manifest.known_hashes())
        self._memory[file_id] = _Copy(manifest, checked_at=time.monotonic(), trusted=True)
        self._persist(file_id)
        return manifest

    def _current_fetch(self, file_id: str) -> bool:
        return self._inflight.get(file_id) is asyncio.current_task()

    def _persist(self, file_id: str) -> None:
        """Have the writer store memory's copy of ``file_id`` on disk, soon."""
        self._unwritten[file_id] = None
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_behind(), name="manifest-writer")

    async def _write_behind(self) -> None:
        try:
            while self._unwritten:
                file_id = next(iter(self._unwritten))
                del self._unwritten[file_id]
                copy = self._memory.get(file_id)
                if copy is None:
                    continue  # forgotten: ``forget`` removed the disk copy
                try:
                    await asyncio.to_thread(self._write_disk, copy.manifest)
                except (OSError, ValueError, TypeError) as exc:
                    # Memory still serves; only the copy for a restart is missing.
                    log.warning("could not store a manifest file=%s: %s", file_id, exc)
                    continue
                if file_id not in self._memory:
                    self._unlink_disk(file_id)  # forgotten while the write ran
        finally:
            self._writer = None

    def _path(self, file_id: str) -> Path:
        return self._dir / f"{file_id}.json"

    def _unlink_disk(self, file_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(file_id).unlink()

    def _read_disk(self, file_id: str) -> Manifest | None:
        path = self._path(file_id)
        try:
            return Manifest.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, Unavailable):
            log.warning("dropping unreadable cached manifest %s", path)
            self._unlink_disk(file_id)
            return None

    def _write_disk(self, manifest: Manifest) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".manifest.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(manifest.to_dict(), handle)
            os.replace(tmp, self._path(manifest.file_id))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
