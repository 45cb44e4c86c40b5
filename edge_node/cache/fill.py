"""A verified ranged fetch of one chunk into memory, written to its part file as it
grows: the fill buffer, the byte budget fill buffers share, and the download.

Nothing here touches the index: the cache (``facade``) decides where a chunk goes.
The chunk is split into a few parts fetched by concurrent ranged GETs into one
preallocated buffer (``edge_node.fill_parts``); readers in this process stream from
the buffer as bytes land, readers in other processes from the part file, which
receives the contiguous prefix as it grows. The SHA-256 is computed over the same
prefix, in the same thread hop as the file write. A chunk whose hash nobody knows
yet (an imported object) verifies when the control plane records the digest or
answers that it already had it (``HashSettler``). One fresh try on a mismatch: a
flipped bit in transit is worth a retry, a wrong object at the origin is not.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import mmap
import os
from collections.abc import Callable
from typing import Protocol

from fsnode_core.errors import IntegrityError, Unavailable

from edge_node.background import retrieve_exception
from edge_node.cache.config import CacheConfig, CacheStats
from edge_node.fill_parts import check_tiling, fill_parts, first_part_leads
from edge_node.manifest import ChunkInfo, Manifest

log = logging.getLogger(__name__)

# A chunk's bytes in memory (``zeroed``).
Buffer = bytearray | mmap.mmap
# Hash (and write out for other processes) the growing prefix in steps of at least
# this much (each step is a thread hop; smaller steps let followers start sooner).
_HASH_STEP = 256 * 1024


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


def zeroed(length: int) -> Buffer:
    """A writable buffer of ``length`` bytes whose pages the kernel supplies as they
    are first written. ``bytearray(n)`` zeroes all of them up front: for a 4 MiB
    chunk that is about a thousand page faults (milliseconds on a VM) before the
    first origin GET could start, where the fill needs only the first part's."""
    if length == 0:
        return bytearray()
    return mmap.mmap(-1, length)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class FillBuffer:
    """One attempt at one chunk: a preallocated buffer filled by concurrent parts.

    ``parts`` are ``(start, stop)`` ranges tiling the chunk, in the order they are
    requested; each part's bytes land in order from its start, so what is in place
    is, per part, a prefix of it. With ``lead``, the first part is requested alone
    until its first bytes arrive (a reader waits for it).
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
        # False once writing the part file failed (disk full): the chunk still serves
        # its readers here, but is not kept.
        self.written = True
        self.outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.outcome.add_done_callback(_retrieve)
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


class ByteBudget:
    """Bytes that this process's fill buffers may hold at once (release never waits,
    so it is safe in ``finally`` blocks of cancelled tasks)."""

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


class Fetcher:
    """Verified downloads of chunks (``download``), each attempt in a fresh buffer."""

    def __init__(
        self, origin: Origin, config: CacheConfig, stats: CacheStats, hashes: HashSettler | None
    ) -> None:
        self._origin = origin
        self._config = config
        self._stats = stats
        # Without a settler, chunks of unknown hash cannot be served (fail closed).
        self._hashes = hashes

    async def settle(self, manifest: Manifest, chunk: ChunkInfo, digest: str) -> str:
        """The hash to check a chunk of unknown hash against: a ticket-built manifest's
        comes from the real manifest (read meanwhile); an import's is settled."""
        if manifest.confirm is not None:
            real = manifest.confirmed(await manifest.confirm())
            known = real.chunks[chunk.index].sha256
            if known is not None:
                return known
            manifest = real
        if self._hashes is None:
            raise Unavailable("the chunk's SHA-256 is unknown", chunk=chunk.index)
        return await self._hashes.settle(manifest, chunk.index, digest)

    async def download(
        self,
        manifest: Manifest,
        chunk: ChunkInfo,
        start: int | None,
        attach: Callable[[FillBuffer], int | None],
        *,
        wants: int | None = None,
    ) -> tuple[FillBuffer, str]:
        """The chunk's bytes and their SHA-256, checked against the known hash, or
        against the hash the control plane holds once ours is offered (unknown hash).

        ``attach`` is told of each attempt's buffer (readers follow it) and answers
        the descriptor of a fresh part file for it, or None (nothing to write).
        Readers of a bad buffer fail. ``wants``: bytes the reader at ``start`` reads;
        the first GET asks for no more than that (at least ``min_first_part_bytes``).
        """
        expected = chunk.sha256
        config = self._config
        first_bytes = config.first_part_bytes
        if wants is not None and 0 < first_bytes < chunk.length:
            # Only a first part that leads anyway gets shorter: a chunk no longer than
            # it is still read whole in even parts (where early reads expect it).
            first_bytes = min(first_bytes, max(config.min_first_part_bytes, wants))
        for attempt in (1, 2):
            parts = fill_parts(
                chunk.length,
                config.part_bytes,
                config.max_parts,
                start=start,
                first_bytes=first_bytes,
            )
            lead = first_part_leads(chunk.length, start, first_bytes)
            buffer = FillBuffer(chunk.length, parts, lead=lead)
            part_file = attach(buffer)
            try:
                digest = await self._fetch(buffer, manifest, chunk, part_file)
                if expected is None:
                    # Until the hash is known, the held-back last byte waits.
                    expected = await self.settle(manifest, chunk, digest)
                    if digest == expected and manifest.confirm is None:
                        self._stats.hashes_learned += 1
                if digest != expected:
                    raise IntegrityError(
                        "origin bytes do not match the recorded SHA-256",
                        file_id=manifest.file_id,
                        chunk=chunk.index,
                    )
            except IntegrityError as exc:
                buffer.fail(exc)
                self._stats.integrity_failures += 1
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

    async def _fetch(
        self, buffer: FillBuffer, manifest: Manifest, chunk: ChunkInfo, part_file: int | None
    ) -> str:
        """Concurrent ranged reads of the parts, hashing (and writing out) the prefix
        as it grows; the SHA-256 of the whole chunk.

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
        # A ticket-built manifest's real one is read once the first data bytes are in:
        # asked at once, it would compete with the GET the reader's first byte waits for.
        confirming = manifest.confirm
        digest = hashlib.sha256()
        hashed = 0
        try:
            while hashed < buffer.length:
                if held and (buffer.done[0] > 0 or tasks[0].done()):
                    held = False
                    launch(range(1, len(buffer.parts)))
                if confirming is not None and (buffer.done[0] > 0 or tasks[0].done()):
                    asyncio.ensure_future(confirming()).add_done_callback(retrieve_exception)
                    confirming = None
                for task in tasks:
                    if task.done() and not task.cancelled():
                        error = task.exception()
                        if error is not None:
                            raise error
                prefix = buffer.prefix()
                if prefix - hashed >= _HASH_STEP or (prefix == buffer.length and prefix > hashed):
                    # In a thread: hashlib and the write drop the GIL, the loop keeps serving.
                    if not await asyncio.to_thread(
                        _absorb, digest, buffer.view[hashed:prefix], part_file, hashed
                    ):
                        buffer.written, part_file = False, None
                    hashed = prefix
                else:
                    await buffer.changed()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return digest.hexdigest()


def _absorb(digest: hashlib._Hash, data: memoryview, fd: int | None, offset: int) -> bool:
    """Hash the next piece of the prefix and append it to the part file; False when
    the write failed."""
    digest.update(data)
    if fd is None:
        return True
    try:
        # Other processes follow the part file's size: the prefix, in order.
        os.pwrite(fd, data, offset)
    except OSError as exc:
        log.warning("could not write a chunk's part file: %s", exc)
        return False
    return True
