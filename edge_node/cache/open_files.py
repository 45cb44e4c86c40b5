"""Chunk files this process has opened and verified, kept open between hits.

Kept open as nginx's ``open_file_cache`` does: an open and a close per request were
about 4% of a 64 KiB HTTPS hit's CPU. A file enters only after this process has
checked its SHA-256 (``facade``: at first open, so a flipped byte on disk is found
before it is served). While any lease of this process holds a file, the process
holds a shared flock on it: the pin other processes' evictions respect. Taking it
also re-checks the file with one ``fstat``: a file another process has unlinked
(evicted, dropped) or truncated is let go, and the request looks again.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from edge_node.cache.layout import ChunkKey, try_lock, unlock
from edge_node.cache.leases import DiskLease

log = logging.getLogger(__name__)

# Chunk files kept open between hits.
OPEN_FILES = 256


@dataclass(slots=True)
class OpenChunk:
    key: ChunkKey
    fd: int
    inode: int
    size: int
    pins: int = 0
    # Let go of (replaced, found unlinked): the descriptor closes with the last lease.
    retired: bool = False


class OpenFiles:
    """This process's verified chunk files by key (least recently used first)."""

    def __init__(self, on_damaged: Callable[[ChunkKey, int], None]) -> None:
        self._files: OrderedDict[ChunkKey, OpenChunk] = OrderedDict()
        # Told of a file found shorter than recorded: (key, inode).
        self._on_damaged = on_damaged

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, key: ChunkKey) -> bool:
        return key in self._files

    def add(self, key: ChunkKey, fd: int, size: int) -> None:
        """Keep a verified file's descriptor (ours from now on)."""
        old = self._files.pop(key, None)
        if old is not None:
            self._retire(old)
        self._files[key] = OpenChunk(key, fd, os.fstat(fd).st_ino, size)
        if len(self._files) > OPEN_FILES:
            for victim in list(self._files.values()):
                if len(self._files) <= OPEN_FILES:
                    break
                if victim.pins == 0 and victim.key != key:
                    del self._files[victim.key]
                    self._retire(victim)

    def lease(self, key: ChunkKey) -> DiskLease | None:
        """A lease on a verified file, or None (not open here, or no longer valid)."""
        entry = self._files.get(key)
        if entry is None:
            return None
        if entry.pins == 0:
            if not try_lock(entry.fd, exclusive=False):
                return None  # another process is evicting it this instant
            stat = os.fstat(entry.fd)
            if stat.st_nlink == 0 or stat.st_size != entry.size:
                unlock(entry.fd)
                self.forget(key)
                if stat.st_nlink and stat.st_size != entry.size:
                    self._on_damaged(key, entry.inode)
                return None
        entry.pins += 1
        self._files.move_to_end(key)

        def release() -> None:
            entry.pins -= 1
            if entry.pins == 0:
                if entry.retired:
                    os.close(entry.fd)
                else:
                    unlock(entry.fd)

        def short() -> None:
            if self._files.get(key) is entry:
                self.forget(key)
                self._on_damaged(key, entry.inode)

        return DiskLease(key, entry.size, entry.fd, release, short)

    def forget(self, key: ChunkKey) -> None:
        entry = self._files.pop(key, None)
        if entry is not None:
            self._retire(entry)

    def forget_file(self, file_id: str, tag: str | None) -> None:
        for key in [k for k in self._files if k[0] == file_id and (tag is None or k[1] == tag)]:
            self.forget(key)

    def keys(self) -> list[ChunkKey]:
        return list(self._files)

    def _retire(self, entry: OpenChunk) -> None:
        entry.retired = True
        if entry.pins == 0:
            os.close(entry.fd)

    def close(self) -> None:
        for key in list(self._files):
            self.forget(key)
