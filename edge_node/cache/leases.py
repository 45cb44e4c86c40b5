"""Leases: a chunk held while a response sends it. Each kind knows how to read its
bytes and how to let go (``release``, idempotent), so the server never asks which
kind it holds.

- ``DiskLease``: a verified chunk file, through this process's shared descriptor
  (``open_files``), pinned across processes by a shared flock while held.
- ``StreamLease``: a fill of this process in progress, read from its buffer.
- ``FollowLease``: a fill of another process in progress, read from its part file
  as it grows (``fill_lock.Follower``).

A streaming reader holds back the last byte of its slice until the chunk has
verified; if the check fails the reader raises, the server cuts the connection,
and the client sees a body shorter than its Content-Length instead of a clean end.
The bytes before the cut may be wrong, which is why it must not look complete:
HTTP/1.1 has no other way to take bytes back once sent.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable

from fsnode_core.errors import IntegrityError, Unavailable

from edge_node.cache.config import BLOCK
from edge_node.cache.fill import FillBuffer
from edge_node.cache.fill_lock import Follower
from edge_node.cache.layout import ChunkKey
from edge_node.diskio import pread, read_if_cached


class ChunkLease(ABC):
    """A chunk held for serving; ``blocks`` yields its bytes; ``release`` lets go."""

    key: ChunkKey
    size: int
    # A descriptor for kernel sendfile; only disk leases have one.
    fd: int | None = None

    def __init__(self, key: ChunkKey, size: int, on_release: Callable[[], None] | None) -> None:
        self.key = key
        self.size = size
        self._on_release = on_release
        self.released = False

    async def ready(self, offset: int, length: int) -> None:
        """Return once the first of ``length`` bytes at ``offset`` can be sent (raise
        if it never will)."""
        return  # bytes on disk are ready at once; leases that wait override this

    @abstractmethod
    def blocks(
        self, offset: int, length: int, block: int = BLOCK
    ) -> AsyncGenerator[memoryview | bytes, None]:
        """The ``length`` bytes at ``offset``, in blocks of at most ``block`` bytes (each
        kind reads its own way)."""

    def now(self, offset: int, length: int, block: int = BLOCK) -> memoryview | bytes | None:
        """The ``length`` bytes at ``offset`` in one block, if they fit one (``block``) and
        nothing has to be waited for (no async generator for a small hit); else None."""
        return None

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.fd = None
        if self._on_release is not None:
            self._on_release()


class DiskLease(ChunkLease):
    """A chunk file read through the process's shared descriptor (not ours to close).
    ``on_short``: the file turned out shorter than recorded (truncated on disk)."""

    def __init__(
        self,
        key: ChunkKey,
        size: int,
        fd: int,
        on_release: Callable[[], None],
        on_short: Callable[[], None],
    ) -> None:
        super().__init__(key, size, on_release)
        self.fd = fd
        self._on_short = on_short

    async def blocks(
        self, offset: int, length: int, block: int = BLOCK
    ) -> AsyncGenerator[memoryview | bytes, None]:
        fd = self.fd
        assert fd is not None
        sent = 0
        while sent < length:
            size = min(block, length - sent)
            data = await pread(fd, size, offset + sent)
            if len(data) != size:
                self._on_short()
                raise IntegrityError("a cached chunk is shorter than recorded", key=self.key)
            yield data
            sent += size

    def now(self, offset: int, length: int, block: int = BLOCK) -> memoryview | bytes | None:
        if length > block or self.fd is None:
            return None
        data = read_if_cached(self.fd, length, offset)
        if data is not None and len(data) != length:
            return None  # short: ``blocks`` finds it and drops the file
        return data


class StreamLease(ChunkLease):
    """Bytes of this process's fill in progress, sent as they arrive."""

    def __init__(self, key: ChunkKey, buffer: FillBuffer) -> None:
        super().__init__(key, buffer.length, None)
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

    async def blocks(
        self, offset: int, length: int, block: int = BLOCK
    ) -> AsyncGenerator[memoryview | bytes, None]:
        buffer = self.buffer
        end = offset + length
        hold = end - 1
        pos = offset
        while pos < hold:
            avail = min(buffer.available(pos), hold, pos + block)
            if avail > pos:
                yield buffer.view[pos:avail]
                pos = avail
            elif buffer.outcome.done():
                await buffer.outcome
                raise Unavailable("the chunk fill ended without the bytes", key=self.key)
            else:
                await buffer.changed()
        # The held-back byte goes out only for a verified chunk.
        await asyncio.shield(buffer.outcome)
        yield buffer.view[hold:end]


class FollowLease(ChunkLease):
    """Bytes of another process's fill in progress, read from its part file."""

    def __init__(self, key: ChunkKey, size: int, follower: Follower) -> None:
        super().__init__(key, size, follower.close)
        self._follower = follower

    async def ready(self, offset: int, length: int) -> None:
        if length <= 1:
            await self._follower.verified()
        else:
            await self._follower.available_after(offset)

    async def blocks(
        self, offset: int, length: int, block: int = BLOCK
    ) -> AsyncGenerator[memoryview | bytes, None]:
        follower = self._follower
        end = offset + length
        hold = end - 1
        pos = offset
        while pos < hold:
            avail = min(await follower.available_after(pos), hold, pos + block)
            data = await pread(follower.fd, avail - pos, pos)
            if len(data) != avail - pos:
                raise Unavailable("another worker's fill went away", key=self.key)
            yield data
            pos = avail
        await follower.verified()
        yield await pread(follower.fd, 1, hold)
