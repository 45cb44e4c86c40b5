"""Which version of a file an edge may serve, and that version's manifest: read from the
objects the control plane publishes in S3 (docs/PROTOCOL.md, "Published S3 objects",
"Edge"), never from the control plane.

- The **head** says which version is current (or that the file is deleted or expired).
  A head this process read less than ``max_age`` seconds ago (``FSNODE_MANIFEST_MAX_AGE``)
  decides at once; past ``refresh_after`` a request also starts a re-read in the
  background, so steady traffic never waits for one; past ``max_age`` the request waits
  for a fresh head. So no response starts with a version more than ``max_age`` after it
  stopped being current, traffic or not (responses already running finish: the old
  bytes stay readable for the grace period). A head S3 cannot give then fails the
  request (503/502): the bound holds even when S3 is away.
- A **version manifest** is immutable once published, so it is kept (LRU) and never
  read again, except an import's while its chunk hashes are unknown: re-read with its
  head, until the control plane's hashing job has written them.
- Reads overlap: a request that knows the version (a pinned share, a folder listing)
  reads the head and the manifest at once; concurrent requests share one read each.

A chunk's SHA-256 may be unknown (``None``, an import not hashed yet): the first fetch
hashes the pinned object's bytes and the edge keeps that digest (``learn_hash``) for
its own checks. It reports nothing: no node's word changes what others serve.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from fsnode_core.errors import Gone, NotFound
from fsnode_core.published import Head, VersionManifest

from edge_node.background import retrieve_exception
from edge_node.manifest import Manifest

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_K = TypeVar("_K", str, tuple[str, str])


class Published(Protocol):
    """Where heads and manifests come from (``edge_node.published_reader.PublishedReader``)."""

    async def head(self, file_id: str) -> Head | None: ...

    async def manifest(self, file_id: str, version: str) -> VersionManifest | None: ...


@dataclass(slots=True)
class _HeadCopy:
    head: Head | None  # None: the file has no head (404)
    # time.monotonic() when the read that brought it was sent (its age is counted
    # from then: the conservative side of the bound).
    read_at: float


def check_serves(file_id: str, head: Head | None, version: str | None, now: float) -> str:
    """The version a request may start with now, per the file's head: ``version`` (a
    pin) while it is current, else the current one. NotFound without a head; Gone for a
    deleted or expired file and for a pin that is no longer current."""
    if head is None:
        raise NotFound("no such file", file_id=file_id)
    if not head.ready or head.version is None:
        raise Gone("the file has been deleted", file_id=file_id)
    if head.expires_at is not None and now >= head.expires_at:
        raise Gone("the file has expired", file_id=file_id, expired_at=head.expires_at)
    if version is not None and version != head.version:
        raise Gone("replaced; open the share URL again", file_id=file_id, version=version)
    return head.version


class ManifestStore:
    """Heads (revalidated within ``max_age``) and version manifests (kept), from S3."""

    def __init__(
        self,
        reader: Published,
        max_age: float = 30.0,
        *,
        max_heads: int = 65536,
        max_manifests: int = 4096,
    ) -> None:
        self.reader = reader
        self.max_age = max_age
        # A hit past this age also re-reads the head in the background.
        self.refresh_after = max_age / 2
        self._max_heads = max_heads
        self._max_manifests = max_manifests
        self._heads: OrderedDict[str, _HeadCopy] = OrderedDict()
        # Versions each file's head has moved away from (a pin naming one is 410 at once).
        self._replaced: dict[str, set[str]] = {}
        self._versions: OrderedDict[tuple[str, str], Manifest] = OrderedDict()
        self._head_reads: dict[str, asyncio.Task[_HeadCopy]] = {}
        self._manifest_reads: dict[tuple[str, str], asyncio.Task[Manifest]] = {}
        self._tasks: set[asyncio.Task[object]] = set()

    def fresh(self, file_id: str, version: str | None) -> Manifest | None:
        """What ``get`` answers when it needs no I/O (a head within the bound and the
        manifest kept), else None: the hit path skips a coroutine with it."""
        copy = self._heads.get(file_id)
        if copy is None:
            return None
        age = time.monotonic() - copy.read_at
        if age >= self.max_age:
            return None
        head = copy.head
        if head is None or not head.serves(version or head.version or "", time.time()):
            return None  # ``get`` raises the answer
        manifest = self._versions.get((file_id, version or str(head.version)))
        if manifest is None:
            return None
        if age >= self.refresh_after:
            self._head_task(file_id, refresh=True)
        self._versions.move_to_end((manifest.file_id, manifest.version))
        return manifest

    async def get(self, file_id: str, version: str | None, *, hint: str | None = None) -> Manifest:
        """The manifest of the version a request for ``file_id`` may start with now:
        ``version`` (a pin) while it is current, else the current one. ``hint``: the
        version the caller expects (a folder listing's), read beside the head.

        NotFound (no such file), Gone (deleted, expired, or the pin replaced),
        OriginError/OriginTimeout (S3 could not answer within the bound)."""
        manifest = self.fresh(file_id, version)
        if manifest is not None:
            return manifest
        kept = self._heads.get(file_id)
        if (
            kept is not None
            and time.monotonic() - kept.read_at < self.max_age
            and (not self._maybe_newer(file_id, kept, version))
        ):
            # The head within the bound decides (a 404 or 410 costs no read either).
            serving = check_serves(file_id, kept.head, version, time.time())
            return await asyncio.shield(self._manifest_task(file_id, serving))
        head_read = self._head_task(file_id)
        expected = version or hint
        early = self._manifest_task(file_id, expected) if expected else None
        copy = await asyncio.shield(head_read)
        serving = check_serves(file_id, copy.head, version, time.time())
        read = early if expected == serving and early is not None else None
        return await asyncio.shield(read or self._manifest_task(file_id, serving))

    def _maybe_newer(self, file_id: str, kept: _HeadCopy, version: str | None) -> bool:
        """Whether a pin may name a version newer than the kept head knows: the control
        plane redirected after a publish this edge has not read yet. Then the head is
        read again (not answered 410 from the kept one). A version this edge saw
        replaced is not newer."""
        head = kept.head
        return (
            version is not None
            and head is not None
            and head.ready
            and version != head.version
            and version not in self._replaced.get(file_id, ())
        )

    def head_decides(self, file_id: str, version: str) -> bool:
        """Whether what this edge read of the file's head speaks for ``version``: a
        head within the bound, or one that replaced it (a version ticket then gives way)."""
        copy = self._heads.get(file_id)
        if copy is not None and time.monotonic() - copy.read_at < self.max_age:
            return True
        return version in self._replaced.get(file_id, ())

    def kept_manifest(self, file_id: str, version: str) -> Manifest | None:
        """The version's manifest if it is in memory, without I/O or a head check."""
        return self._versions.get((file_id, version))

    def confirm(self, file_id: str, version: str) -> Awaitable[Manifest]:
        """The version's manifest, its read started now (or joined, or kept), with no
        head read: for a ticket-built manifest, whose ticket stands in for the head."""
        return asyncio.shield(self._manifest_task(file_id, version))

    def kept(self, file_id: str, version: str) -> bool:
        """Whether the version's manifest is in memory (its data most likely is too)."""
        return (file_id, version) in self._versions

    def peek(self, file_id: str) -> Manifest | None:
        """The kept manifest of the version the cached head names, if any, without I/O."""
        copy = self._heads.get(file_id)
        if copy is None or copy.head is None or copy.head.version is None:
            return None
        return self._versions.get((file_id, copy.head.version))

    async def learn_hash(self, file_id: str, version: str, index: int, sha256: str) -> None:
        """Keep a chunk hash this edge computed from the pinned origin object."""
        key = (file_id, version)
        manifest = self._versions.get(key)
        if manifest is not None:
            self._versions[key] = manifest.with_hashes({index: sha256})

    def forget(self, file_id: str) -> None:
        """Drop what is known of the file: its next request reads the head again."""
        self._heads.pop(file_id, None)
        self._head_reads.pop(file_id, None)
        self._replaced.pop(file_id, None)
        for key in [key for key in self._versions if key[0] == file_id]:
            del self._versions[key]

    def distrust_all(self) -> None:
        """Read every head again before it serves (the node registered again)."""
        self._heads.clear()

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- reads ------------------------------------------------------------------------

    def _head_task(self, file_id: str, *, refresh: bool = False) -> asyncio.Task[_HeadCopy]:
        """The head read in flight for the file, or a new one (one at a time per file)."""
        running = self._head_reads.get(file_id)
        if running is not None and not running.done():  # done: its callbacks are pending
            return running
        task = self._spawn(self._read_head(file_id), self._head_reads, file_id)
        if refresh:
            task.add_done_callback(lambda done: self._refreshed(file_id, done))
        return task

    async def _read_head(self, file_id: str) -> _HeadCopy:
        sent = time.monotonic()
        head = await self.reader.head(file_id)
        copy = _HeadCopy(head, sent)
        if self._head_reads.get(file_id) is not asyncio.current_task():
            return copy  # forgotten meanwhile (evict work): this read may predate it
        known = self._heads.get(file_id)
        older = (
            known is not None
            and known.head is not None
            and head is not None
            and (head.seq < known.head.seq)
        )
        if older and known is not None:
            # An older head than one already seen (S3 read-after-write is strong, but
            # two reads can cross): keep the newer, counted as read now.
            copy = _HeadCopy(known.head, sent)
        previous = known.head.version if known is not None and known.head is not None else None
        if previous is not None and copy.head is not None and copy.head.version != previous:
            self._replaced.setdefault(file_id, set()).add(previous)
            while len(self._replaced) > self._max_heads:
                self._replaced.pop(next(iter(self._replaced)))
        self._heads[file_id] = copy
        self._heads.move_to_end(file_id)
        while len(self._heads) > self._max_heads:
            self._heads.popitem(last=False)
        head = copy.head
        if head is not None and head.version is not None:
            kept = self._versions.get((file_id, head.version))
            if kept is not None and not kept.hashed:
                # An import not hashed yet: the control plane may have written them.
                self._manifest_task(file_id, head.version, reread=True)
        return copy

    def _refreshed(self, file_id: str, task: asyncio.Task[_HeadCopy]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning("head refresh failed file=%s: %s", file_id, task.exception())

    def _manifest_task(
        self, file_id: str, version: str, *, reread: bool = False
    ) -> asyncio.Task[Manifest]:
        key = (file_id, version)
        running = self._manifest_reads.get(key)
        if running is not None and not running.done():
            return running
        kept = self._versions.get(key)
        if kept is not None and not reread:
            return self._spawn(_value(kept), None, key)
        return self._spawn(self._read_manifest(file_id, version), self._manifest_reads, key)

    async def _read_manifest(self, file_id: str, version: str) -> Manifest:
        published = await self.reader.manifest(file_id, version)
        if published is None:
            raise Gone("the version is no longer available", file_id=file_id, version=version)
        manifest = Manifest.from_published(published)
        key = (file_id, version)
        kept = self._versions.get(key)
        if kept is not None:
            # Hashes are only ever learned: keep this edge's where S3 has none yet.
            manifest = manifest.with_hashes(kept.known_hashes())
        self._versions[key] = manifest
        self._versions.move_to_end(key)
        while len(self._versions) > self._max_manifests:
            self._versions.popitem(last=False)
        return manifest

    def _spawn(
        self,
        coro: Awaitable[_T],
        registry: dict[_K, asyncio.Task[_T]] | None,
        key: _K,
    ) -> asyncio.Task[_T]:
        task: asyncio.Task[_T] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        if registry is not None:
            registry[key] = task

        def done(finished: asyncio.Task[_T]) -> None:
            self._tasks.discard(finished)
            if registry is not None and registry.get(key) is finished:
                del registry[key]
            retrieve_exception(finished)

        task.add_done_callback(done)
        return task


async def _value(value: _T) -> _T:
    return value
