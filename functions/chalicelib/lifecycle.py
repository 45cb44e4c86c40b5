"""A version's end: deleted (tombstone) or replaced (retired), then collected after the
grace period (``FSNODE_RETIRE_GRACE_SECONDS``).

From the change on, no edge starts a response with the old version later than the
edges' revalidation bound (the head and tree key say so at once); responses already
running keep reading the old bytes and manifest, which stay in S3 until the version's
collection entry is due and prune starts its garbage collection.
"""

from __future__ import annotations

import time

from fsnode_core.models import FileRecord, RetiredVersion

from chalicelib import aws, gc, publisher
from chalicelib.observability import logger
from chalicelib.settings import get_settings


def due_after_grace(now: int) -> int:
    """When a version retired at ``now`` may be collected."""
    return now + get_settings().retire_grace_seconds


def tombstone(meta: FileRecord, now: int | None = None) -> FileRecord:
    """Delete the file's current version: tombstone it and free its path in one write,
    publish that (head ``deleted``, tree key gone), and collect it once the grace period
    is over (at once without one). Conflict when the file changed since ``meta``."""
    moment = int(time.time()) if now is None else now
    due = due_after_grace(moment)
    deleted = aws.chunk_catalog().tombstone(
        meta, seq=publisher.next_seq(meta.seq), due=due, now=moment
    )
    publisher.publish(deleted)
    logger.info(
        "file tombstoned",
        extra={"file_id": meta.file_id, "version": meta.version, "collect_at": due},
    )
    if due <= moment:
        gc.start(meta.file_id, meta.version)
    return deleted


def retired(file_id: str, version: str, now: int) -> RetiredVersion:
    """The collection entry of a version that stops being current at ``now``."""
    return RetiredVersion(
        file_id=file_id, version=version, retired_at=now, due=due_after_grace(now)
    )


def collect_if_due(entry: RetiredVersion, now: int | None = None) -> None:
    """Start collecting a retired version now when its grace period is zero (prune
    starts the others when they are due)."""
    if entry.due <= (int(time.time()) if now is None else now):
        gc.start(entry.file_id, entry.version)
