"""Cross-process collapsing: one fill per chunk on the whole node, and readers in
other processes streaming from it (as nginx's ``proxy_cache_lock``, but waiters
stream from the growing file instead of waiting for the whole response).

The process that fills a chunk holds an exclusive flock on the chunk's lock file
for the whole fill. The kernel releases it when the process exits, however it
exits, so a SIGKILLed filler can never leave a chunk locked. The filler writes the
chunk's contiguous prefix into its part file as it arrives and, once the bytes
have verified, renames the part file over the chunk's path. A reader in another
process that finds the lock held opens the part file and follows it
(``Follower``): the file's size says how many bytes are in place, and the same
file turning read-only (``VERIFIED_MODE``, set on the inode, so it holds whether
the file is then renamed into place or, with no disk room to keep it, unlinked)
says they verified. The part file being replaced without that (a failed check:
the filler's next attempt), or the lock found free while the file is not marked
(a filler that died), ends the follow with an error: those bytes are never
served as a whole chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from fsnode_core.errors import Unavailable

from edge_node.cache.layout import try_lock, unlock

# A part file's mode while it is written, and once its bytes have verified.
WRITING_MODE = 0o600
VERIFIED_MODE = 0o444

# Look whether a stalled fill's process is still there every this many looks.
_LIVENESS_EVERY = 16


class FillLock:
    """The exclusive right to fill one chunk, held through an open lock file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if no process holds it (never waits)."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        if try_lock(fd, exclusive=True):
            self._fd = fd
            return True
        os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            unlock(self._fd)
            os.close(self._fd)
            self._fd = None


def lock_is_free(path: Path) -> bool:
    """Whether nobody holds a chunk's fill lock (the look takes it for an instant)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        if not try_lock(fd, exclusive=True):
            return False
        unlock(fd)
        return True
    finally:
        os.close(fd)


def create_part(path: Path) -> int:
    """A fresh part file (a new inode: followers of an earlier attempt notice)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, WRITING_MODE)
    os.fchmod(fd, WRITING_MODE)  # whatever the umask
    return fd


def mark_verified(fd: int) -> None:
    """Tell followers the part file's bytes are whole and verified."""
    os.fchmod(fd, VERIFIED_MODE)


def publish(part: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)


def discard(part: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(part)


class Follower:
    """A reader's view of another process's fill: its part file, opened once."""

    def __init__(
        self, fd: int, size: int, part: Path, final: Path, lock: Path, interval: float
    ) -> None:
        self.fd = fd
        self.size = size
        self._inode = os.fstat(fd).st_ino
        self._part = part
        self._final = final
        self._lock = lock
        self._interval = interval
        self._done = False
        self._looks = 0

    @classmethod
    def open(
        cls, size: int, part: Path, final: Path, lock: Path, interval: float
    ) -> Follower | None:
        """Follow the fill writing ``part``; None when there is no part file (yet)."""
        try:
            fd = os.open(part, os.O_RDONLY)
        except FileNotFoundError:
            return None
        # Pin the inode for eviction once it is renamed into place (see layout).
        try_lock(fd, exclusive=False)
        return cls(fd, size, part, final, lock, interval)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _inode_at(self, path: Path) -> int | None:
        try:
            return os.stat(path).st_ino
        except FileNotFoundError:
            return None

    def _look(self) -> int:
        """Bytes in place; raises once the fill has failed for good."""
        if self._done:
            return self.size
        if self._verified():
            return self.size
        have = os.fstat(self.fd).st_size
        if self._inode_at(self._part) != self._inode and not self._verified():
            raise Unavailable("another worker's fill of this chunk failed")
        self._looks += 1
        if self._looks % _LIVENESS_EVERY == 0 and lock_is_free(self._lock):
            # The filler let go: verified just now, or died mid-fill.
            if self._verified():
                return self.size
            raise Unavailable("another worker's fill of this chunk stopped")
        return min(have, self.size)

    def _verified(self) -> bool:
        stat = os.fstat(self.fd)
        if stat.st_mode & 0o777 == VERIFIED_MODE and stat.st_size >= self.size:
            self._done = True
        return self._done

    async def available_after(self, pos: int) -> int:
        """The end of the bytes in place once some are past ``pos``."""
        delay = self._interval
        while True:
            have = self._look()
            if have > pos:
                return have
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._interval * 16)

    async def verified(self) -> None:
        delay = self._interval
        while True:
            self._look()
            if self._done:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._interval * 16)
