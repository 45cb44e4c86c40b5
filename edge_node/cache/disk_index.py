"""The shared disk index: every chunk on disk, its size, its verified SHA-256 and
when it was last used; the disk space fills have set aside; eviction.

One SQLite database in WAL mode under the cache root, shared by every process of
the node, plays the part of nginx's shared-memory cache zone: one byte budget and
one least-recently-used order for all workers. Readers never wait for a writer
(WAL); writers (a reservation, a stored chunk, an eviction) take the database's
write lock for a few milliseconds. Hits do not write: each process batches the
keys it served and flushes them every ``touch_interval`` (``touch``), so the LRU
order is exact to about a second. Everything here blocks; the cache calls it in a
thread. A process killed mid-transaction leaves nothing half-done (SQLite rolls it
back), and space it had reserved is given back when its pid is seen dead.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from edge_node.cache.config import CacheConfig
from edge_node.cache.layout import ChunkKey, Layout, unlink_all, unlink_unpinned

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    file_id TEXT NOT NULL, tag TEXT NOT NULL, idx INTEGER NOT NULL,
    size INTEGER NOT NULL, sha256 TEXT, used REAL NOT NULL,
    PRIMARY KEY (file_id, tag, idx)
);
CREATE INDEX IF NOT EXISTS chunks_by_use ON chunks (used);
CREATE TABLE IF NOT EXISTS reservations (
    id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    pid INTEGER PRIMARY KEY, in_flight INTEGER NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    pid INTEGER PRIMARY KEY, body TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Stored:
    """A chunk's index row."""

    size: int
    # The SHA-256 the bytes were checked against when stored; None for a chunk found
    # on disk at start (checked against the manifest at first use).
    sha256: str | None


@dataclass(frozen=True, slots=True)
class Totals:
    used: int
    reserved: int
    chunks: int
    disk_avail: int
    disk_total: int


class DiskIndex:
    """One process's connection to the shared index (thread-safe)."""

    def __init__(self, layout: Layout, config: CacheConfig) -> None:
        self._layout = layout
        self._config = config
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def connect(self) -> None:
        db = sqlite3.connect(
            self._layout.index, isolation_level=None, check_same_thread=False, timeout=30
        )
        db.execute("PRAGMA journal_mode=WAL")
        # No fsync per commit: after a power loss a chunk whose row is lost is found
        # by the next start's scan, and a row whose file is damaged fails its check.
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        self._db = db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the disk index is not open")
        return self._db

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    # -- start -------------------------------------------------------------------

    def rebuild(self, found: Iterable[tuple[ChunkKey, int, float]]) -> None:
        """Make the index match the files found at start (no worker runs yet): rows
        without a file go, files without a row come in unverified, last used at their
        mtime; a file whose size differs from its row is taken as found."""
        files = {key: (size, mtime) for key, size, mtime in found}
        with self._write() as db:
            db.execute("DELETE FROM reservations")
            db.execute("DELETE FROM workers")
            # The node's counters carry over a restart (what a process found before it
            # stopped still counts), folded into one row.
            summed: dict[str, int] = {}
            for (body,) in db.execute("SELECT body FROM counters").fetchall():
                for name, value in json.loads(body).items():
                    summed[name] = summed.get(name, 0) + int(value)
            db.execute("DELETE FROM counters")
            if summed:
                db.execute("INSERT INTO counters VALUES (0, ?)", (json.dumps(summed),))
            rows = db.execute("SELECT file_id, tag, idx, size FROM chunks").fetchall()
            for file_id, tag, idx, size in rows:
                key = (file_id, tag, idx)
                on_disk = files.pop(key, None)
                if on_disk is None or on_disk[0] != size:
                    db.execute("DELETE FROM chunks WHERE file_id=? AND tag=? AND idx=?", key)
                    if on_disk is not None:
                        files[key] = on_disk
            db.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, NULL, ?)",
                [(*key, size, mtime) for key, (size, mtime) in files.items()],
            )

    # -- lookups -----------------------------------------------------------------

    def get(self, key: ChunkKey) -> Stored | None:
        rows = self._read(
            "SELECT size, sha256 FROM chunks WHERE file_id=? AND tag=? AND idx=?", key
        )
        if not rows:
            return None
        size, sha256 = rows[0]
        return Stored(int(size), sha256 if isinstance(sha256, str) else None)  # type: ignore[call-overload]

    def totals(self) -> Totals:
        used, chunks = self._read("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM chunks")[0]
        (reserved,) = self._read("SELECT COALESCE(SUM(bytes), 0) FROM reservations")[0]
        avail, total = self._disk()
        return Totals(int(used), int(reserved), int(chunks), avail, total)  # type: ignore[call-overload]

    def hot_files(self, limit: int) -> list[str]:
        rows = self._read(
            "SELECT file_id FROM chunks GROUP BY file_id ORDER BY MAX(used) DESC LIMIT ?",
            (limit,),
        )
        return [str(file_id) for (file_id,) in rows]

    def stored_after(self, rowid: int, limit: int) -> list[tuple[int, ChunkKey, Stored]]:
        """Verified rows in storage order from ``rowid`` on (the scrub's walk)."""
        rows = self._read(
            "SELECT rowid, file_id, tag, idx, size, sha256 FROM chunks "
            "WHERE rowid > ? AND sha256 IS NOT NULL ORDER BY rowid LIMIT ?",
            (rowid, limit),
        )
        return [
            (int(r[0]), (str(r[1]), str(r[2]), int(r[3])), Stored(int(r[4]), str(r[5])))  # type: ignore[call-overload]
            for r in rows
        ]

    # -- disk space --------------------------------------------------------------

    def _disk(self) -> tuple[int, int]:
        """Free bytes (for unprivileged writers) and total bytes of the cache's
        filesystem; (0, 0) when statvfs fails (only the cap is known)."""
        try:
            info = os.statvfs(self._layout.root)
        except OSError:
            return 0, 0
        return info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize

    def _shortfall(self, db: sqlite3.Connection, size: int) -> int:
        used = int(db.execute("SELECT COALESCE(SUM(size), 0) FROM chunks").fetchone()[0])
        reserved = int(db.execute("SELECT COALESCE(SUM(bytes), 0) FROM reservations").fetchone()[0])
        by_cap = used + reserved + size - self._config.max_bytes
        avail, total = self._disk()
        if not total:
            return max(by_cap, 0)
        by_disk = int(total * self._config.min_free_ratio) - (avail - reserved - size)
        return max(by_cap, by_disk, 0)

    def reserve(self, size: int) -> tuple[int | None, int]:
        """Set aside ``size`` bytes for a fill, evicting least-recently-used unpinned
        chunks if needed: the reservation's id (None when there is no room) and the
        count of chunks evicted."""
        with self._write() as db:
            _forget_dead(db)
            need = self._shortfall(db, size)
            evicted = 0
            if need > 0:
                evicted = self._evict(db, need)[1]
                if self._shortfall(db, size) > 0:
                    return None, evicted
            cursor = db.execute(
                "INSERT INTO reservations (pid, bytes) VALUES (?, ?)", (os.getpid(), size)
            )
            return int(cursor.lastrowid or 0), evicted

    def cancel(self, reservation: int) -> None:
        with self._write() as db:
            db.execute("DELETE FROM reservations WHERE id=?", (reservation,))

    def commit(
        self, reservation: int, key: ChunkKey, size: int, sha256: str, publish: Callable[[], None]
    ) -> None:
        """A verified chunk takes its place: its reserved bytes become its row and
        ``publish`` renames its file into place, in one transaction, so an eviction
        never sees the row without the file or the file without the row."""
        with self._write() as db:
            db.execute("DELETE FROM reservations WHERE id=?", (reservation,))
            db.execute(
                "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                (*key, size, sha256, time.time()),
            )
            publish()

    def set_sha256(self, key: ChunkKey, sha256: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE chunks SET sha256=? WHERE file_id=? AND tag=? AND idx=?", (sha256, *key)
            )

    def touch(self, keys: dict[ChunkKey, float]) -> None:
        if not keys:
            return
        with self._write() as db:
            db.executemany(
                "UPDATE chunks SET used=MAX(used, ?) WHERE file_id=? AND tag=? AND idx=?",
                [(at, *key) for key, at in keys.items()],
            )

    def report_load(self, in_flight: int) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO workers VALUES (?, ?, ?)",
                (os.getpid(), in_flight, time.time()),
            )

    def report_counters(self, counters: dict[str, int]) -> None:
        """This process's cache counters, for node-wide metrics (kept after it exits,
        so the node's sums never go back when a worker restarts)."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO counters VALUES (?, ?)",
                (os.getpid(), json.dumps(counters)),
            )

    def counters(self) -> dict[int, dict[str, int]]:
        """Every process's last reported counters, by pid."""
        rows = self._read("SELECT pid, body FROM counters")
        return {int(pid): json.loads(str(body)) for pid, body in rows}  # type: ignore[call-overload]

    def load(self, fresh_seconds: float) -> int:
        (total,) = self._read(
            "SELECT COALESCE(SUM(in_flight), 0) FROM workers WHERE at > ?",
            (time.time() - fresh_seconds,),
        )[0]
        return int(total)  # type: ignore[call-overload,no-any-return]

    # -- eviction ----------------------------------------------------------------

    def evict_to_watermark(self) -> tuple[int, int]:
        """Past the high watermark (or under the free-space floor), evict down to the
        low one; the bytes freed and the chunks evicted."""
        config = self._config
        with self._write() as db:
            (used,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM chunks").fetchone()
            avail, total = self._disk()
            floor = int(total * config.min_free_ratio)
            need = 0
            if used > config.max_bytes * config.high_water:
                need = used - int(config.max_bytes * config.low_water)
            if total and avail < floor:
                gap = int(config.max_bytes * (config.high_water - config.low_water))
                need = max(need, floor - avail + gap)
            return self._evict(db, need) if need > 0 else (0, 0)

    def _evict(self, db: sqlite3.Connection, need: int) -> tuple[int, int]:
        freed = count = 0
        rows = db.execute("SELECT file_id, tag, idx, size FROM chunks ORDER BY used").fetchall()
        for file_id, tag, idx, size in rows:
            if freed >= need:
                break
            key = (file_id, tag, idx)
            # A chunk some process is sending (its shared flock) stays.
            if not unlink_unpinned(self._layout.chunk_path(key)):
                continue
            db.execute("DELETE FROM chunks WHERE file_id=? AND tag=? AND idx=?", key)
            freed += size
            count += 1
        return freed, count

    def remove_file(self, file_id: str, tag: str | None) -> int:
        """Drop a file's chunks (one version or all), pinned or not: open descriptors
        keep reading the unlinked files. The count dropped."""
        with self._write() as db:
            if tag is None:
                rows = db.execute(
                    "SELECT tag, idx FROM chunks WHERE file_id=?", (file_id,)
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT tag, idx FROM chunks WHERE file_id=? AND tag=?", (file_id, tag)
                ).fetchall()
            keys = [(file_id, str(t), int(i)) for t, i in rows]
            db.executemany("DELETE FROM chunks WHERE file_id=? AND tag=? AND idx=?", keys)
            unlink_all(self._layout.chunk_path(k) for k in keys)
        return len(keys)

    def drop(self, key: ChunkKey, inode: int) -> None:
        """Drop a damaged chunk file, unless a fill has replaced it meanwhile (the
        path names another inode by now)."""
        path = self._layout.chunk_path(key)
        with self._write() as db:
            try:
                if os.stat(path).st_ino != inode:
                    return
            except FileNotFoundError:
                pass
            db.execute("DELETE FROM chunks WHERE file_id=? AND tag=? AND idx=?", key)
            unlink_all([path])

    def adopt_or_drop(self, key: ChunkKey, inode: int) -> bool:
        """A chunk file with no row: a filler died between its rename and its commit
        (the transaction rolled back), or it is committing this instant. True when a
        row exists once the writers are through (keep the file); else the stray file
        is unlinked, uncounted bytes must not stay, and False."""
        path = self._layout.chunk_path(key)
        with self._write() as db:
            row = db.execute(
                "SELECT 1 FROM chunks WHERE file_id=? AND tag=? AND idx=?", key
            ).fetchone()
            if row is not None:
                return True
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            return False


def _forget_dead(db: sqlite3.Connection) -> None:
    """Reservations of processes that died (SIGKILL mid-fill) give their bytes back."""
    for (pid,) in db.execute("SELECT DISTINCT pid FROM reservations").fetchall():
        if not _alive(int(pid)):
            db.execute("DELETE FROM reservations WHERE pid=?", (pid,))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
