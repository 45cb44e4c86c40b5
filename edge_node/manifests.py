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
from fsnode_core.errors import FsnodeError, Gone, NotFound, Unavailable
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
    # The file's name: what a prefix share (``pfx=``) is checked against.
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


class ManifestStore:
    """Manifests by file id: memory first, then the source, then the disk copy.

    A version's bytes never change (a new version is a new cache key), so a cached
    manifest is trusted for ``fresh_seconds``; after that it is refetched so
    deletions and new versions reach the edge, and reused when the source is down.
    Chunk hashes are only ever learned, never forgotten: a refetched manifest of the
    same version keeps the hashes this edge has recorded, even if the answer was
    read before the record landed.
    """

    def __init__(
        self, source: ManifestSource, state_dir: Path, fresh_seconds: float = 30.0
    ) -> None:
        self._source = source
        self._dir = state_dir / "manifests"
        self._fresh = fresh_seconds
        self._memory: dict[str, tuple[float, Manifest]] = {}
        self._inflight: dict[str, asyncio.Task[Manifest]] = {}
        # Disk writes go one at a time and copy what memory holds then, so the disk
        # copy ends up as the latest manifest (learned hashes included).
        self._disk_lock = asyncio.Lock()

    async def get(self, file_id: str, version: str | None) -> Manifest:
        """The manifest of ``file_id`` if its current version is ``version`` (any
        version when ``version`` is None: a prefix share serves the current one).

        Raises Gone when the file has moved on to another version (the share names
        a superseded one), NotFound/Gone when the control plane says so, and
        Unavailable when it cannot answer and no copy is cached.
        """
        manifest = self.fresh(file_id, version)
        if manifest is not None:
            return manifest
        cached = self._memory.get(file_id)
        if cached is None:
            disk = await asyncio.to_thread(self._read_disk, file_id)
            if disk is not None:
                # Loaded copies are stale by definition: refetch, keep as fallback.
                cached = (float("-inf"), disk)
                self._memory[file_id] = cached
        usable = cached is not None and version in (None, cached[1].version)
        if cached is not None and usable and time.monotonic() - cached[0] < self._fresh:
            manifest = cached[1]
        else:
            try:
                manifest = await self._fetch(file_id)
            except (NotFound, Gone):
                self.forget(file_id)
                raise
            except Unavailable:
                if cached is None or not usable:
                    raise
                log.warning("control plane unavailable; serving cached manifest file=%s", file_id)
                manifest = cached[1]
        if version is not None and manifest.version != version:
            raise Gone(
                "the share URL names a version the file no longer has",
                file_id=file_id,
                version=version,
            )
        manifest.check_servable()
        return manifest

    def fresh(self, file_id: str, version: str | None) -> Manifest | None:
        """What ``get`` answers when it needs no I/O (a fresh copy of the wanted
        version), else None: the hit path skips a coroutine with it."""
        cached = self._memory.get(file_id)
        if cached is None or time.monotonic() - cached[0] >= self._fresh:
            return None
        manifest = cached[1]
        if version is not None and manifest.version != version:
            return None  # ``get`` refetches: the file may have moved on
        manifest.check_servable()
        return manifest

    async def refresh(self, file_id: str) -> Manifest:
        """The control plane's manifest now, whatever is cached (after a hash conflict)."""
        return await self._fetch(file_id)

    def peek(self, file_id: str) -> Manifest | None:
        """The cached manifest, if any, without I/O."""
        cached = self._memory.get(file_id)
        return cached[1] if cached else None

    async def learn_hash(self, file_id: str, version: str, index: int, sha256: str) -> None:
        """Keep a chunk hash the control plane has just confirmed (memory and disk)."""
        cached = self._memory.get(file_id)
        if cached is None or cached[1].version != version:
            return
        manifest = cached[1].with_hashes({index: sha256})
        if manifest is cached[1]:
            return
        self._memory[file_id] = (cached[0], manifest)
        await self._persist(file_id)

    def forget(self, file_id: str) -> None:
        self._memory.pop(file_id, None)
        with contextlib.suppress(FileNotFoundError):
            (self._dir / f"{file_id}.json").unlink()

    async def _fetch(self, file_id: str) -> Manifest:
        # Collapse concurrent lookups of one file into one control-plane call.
        task = self._inflight.get(file_id)
        if task is None:
            task = asyncio.create_task(self._fetch_and_store(file_id))
            self._inflight[file_id] = task
            task.add_done_callback(lambda _t: self._inflight.pop(file_id, None))
            task.add_done_callback(retrieve_exception)
        return await asyncio.shield(task)

    async def _fetch_and_store(self, file_id: str) -> Manifest:
        manifest = await self._source.fetch_manifest(file_id)
        if manifest.file_id != file_id:
            raise Unavailable("the control plane answered with another file's manifest")
        cached = self._memory.get(file_id)
        if cached is not None and cached[1].version == manifest.version:
            manifest = manifest.with_hashes(cached[1].known_hashes())
        self._memory[file_id] = (time.monotonic(), manifest)
        await self._persist(file_id)
        return manifest

    async def _persist(self, file_id: str) -> None:
        async with self._disk_lock:
            cached = self._memory.get(file_id)
            if cached is not None:
                await asyncio.to_thread(self._write_disk, cached[1])

    def _read_disk(self, file_id: str) -> Manifest | None:
        path = self._dir / f"{file_id}.json"
        try:
            return Manifest.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, Unavailable):
            log.warning("dropping unreadable cached manifest %s", path)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None

    def _write_disk(self, manifest: Manifest) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".manifest.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(manifest.to_dict(), handle)
            os.replace(tmp, self._dir / f"{manifest.file_id}.json")
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
