"""Where the cache's files live, and the synchronous file operations on them.

Under the cache root::

    chunks/FF/FILE_ID/VERSION_TAG/INDEX   a verified chunk (appears only by rename)
    tmp/FILE_ID.VERSION_TAG.INDEX.part    a fill in progress, growing from its start
    locks/FF/FILE_ID.VERSION_TAG.INDEX    the chunk's fill lock (flock, never deleted
                                          while workers run: see ``fill_lock``)
    index.sqlite3                         the shared index (``disk_index``)

A chunk file is never written in place: a fill writes its part file and renames it
over the chunk's path once the bytes have verified, so a reader opening the path
sees a whole chunk or nothing. Everything here blocks: callers run it in a thread,
or on the loop where it is one cheap syscall.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from fsnode_core.errors import InvalidInput
from fsnode_core.ids import check_id

from edge_node.cache.config import MIB
from edge_node.manifest import Manifest

log = logging.getLogger(__name__)

# (file_id, version tag, chunk index): a new version is a new key, so a chunk of
# an overwritten file can never be served for the new version.
ChunkKey = tuple[str, str, int]

_SAFE_VERSION = re.compile(r"[0-9A-Za-z_-]{1,64}")


@functools.lru_cache(maxsize=4096)
def version_tag(version: str) -> str:
    """A path-safe directory name for a version string (hashed when not plain)."""
    if _SAFE_VERSION.fullmatch(version):
        return version
    return "h-" + hashlib.sha256(version.encode()).hexdigest()[:40]


def key_for(manifest: Manifest, index: int) -> ChunkKey:
    return (manifest.file_id, version_tag(manifest.version), index)


class Layout:
    """Paths of one cache root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.chunks = root / "chunks"
        self.tmp = root / "tmp"
        self.locks = root / "locks"
        self.index = root / "index.sqlite3"

    def chunk_path(self, key: ChunkKey) -> Path:
        file_id, tag, index = key
        return self.chunks / file_id[:2] / file_id / tag / str(index)

    def part_path(self, key: ChunkKey) -> Path:
        file_id, tag, index = key
        return self.tmp / f"{file_id}.{tag}.{index}.part"

    def lock_path(self, key: ChunkKey) -> Path:
        file_id, tag, index = key
        return self.locks / file_id[:2] / f"{file_id}.{tag}.{index}"

    def make_dirs(self) -> None:
        for folder in (self.chunks, self.tmp, self.locks):
            folder.mkdir(parents=True, exist_ok=True)

    def recover(self) -> list[tuple[ChunkKey, int, float]]:
        """At node start, before any worker runs: drop fills in progress and stale
        locks, and list the chunks on disk as ``(key, size, mtime)``."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.locks, ignore_errors=True)
        self.make_dirs()
        return self.scan()

    def scan(self) -> list[tuple[ChunkKey, int, float]]:
        found: list[tuple[ChunkKey, int, float]] = []
        for path in self.chunks.glob("*/*/*/*"):
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
            found.append(((file_id, path.parent.name, index), stat.st_size, stat.st_mtime))
        return found


def file_sha256(fd: int, size: int) -> str | None:
    """The SHA-256 of the first ``size`` bytes of an open file; None if it is shorter."""
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        block = os.pread(fd, min(MIB, size - offset), offset)
        if not block:
            return None
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def try_lock(fd: int, *, exclusive: bool) -> bool:
    """A non-blocking flock on an open file; False when another holder conflicts."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)


def unlink_unpinned(path: Path) -> bool:
    """Unlink a chunk file unless some process holds it (a shared flock: a lease);
    True when it is gone. Readers that open it meanwhile see it unlinked after their
    lock and let go (``open_files``)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        if not try_lock(fd, exclusive=True):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True
    finally:
        os.close(fd)


def unlink_all(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
