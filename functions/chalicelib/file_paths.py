"""Which file an upload or import writes: files are named by path, unique among live
files; uploading to a path a live file has makes a new version of that file.

A path is claimed at upload init (``pk=path#P``, a conditional write), so two first
uploads to one new path do not both create a file: the second finds the first's file
id and is refused while that upload is in flight (one upload per file). A tombstone
frees the path in the same write; a first upload that is discarded frees it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fsnode_core.errors import Conflict, Gone, NotFound
from fsnode_core.ids import check_id, new_id
from fsnode_core.models import FILE_READY, FileRecord, PathClaim
from fsnode_core.paths import check_path

from chalicelib import aws

_CLAIM_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Target:
    """The file an upload writes: a new one, or a new version of ``current``."""

    file_id: str
    path: str
    current: FileRecord | None


def upload_target(body: dict[str, Any], now: int) -> Target:
    """The file ``POST /files`` uploads to: ``file_id`` (a new version of that ready
    file; ``path``, if given too, must be its path) or ``path`` (the live file there,
    else a new file, claiming the path)."""
    raw_id = body.get("file_id")
    if raw_id is not None:
        file_id = check_id(raw_id, "file_id")
        meta = ready_file(file_id)
        if body.get("path") is not None and body.get("path") != meta.path:
            raise Conflict(
                "a file keeps its path: upload to the path itself instead",
                field="path",
                path=meta.path,
            )
        return Target(file_id, meta.path, meta)
    path = check_path(body.get("path"), "path")
    catalog = aws.chunk_catalog()
    for _ in range(_CLAIM_ATTEMPTS):
        claim = catalog.get_claim(path)
        if claim is None:
            file_id = new_id()
            if catalog.claim_path(PathClaim(path, file_id, now)):
                return Target(file_id, path, None)
            continue  # claimed meanwhile: look at who has it
        live = catalog.get_file(claim.file_id)
        if live is None:
            # A first upload of this path is in flight (then this one is refused as a
            # second upload of the file) or was abandoned (then this one takes over).
            return Target(claim.file_id, path, None)
        if live.status == FILE_READY:
            return Target(claim.file_id, path, live)
        # A tombstone frees its path in the same write: this claim is being replaced.
    raise Conflict("another upload is claiming this path; retry", field="path")


def import_claim(path: str, file_id: str) -> str | None:
    """Which stale claim an import of ``file_id`` may take over at ``path`` (None: the
    path is free or the import's own). Conflict when a live file (or an upload in
    flight) holds it."""
    catalog = aws.chunk_catalog()
    claim = catalog.get_claim(path)
    if claim is None or claim.file_id == file_id:
        return None
    holder = catalog.get_file(claim.file_id)
    if holder is not None or catalog.get_upload(claim.file_id) is not None:
        raise Conflict("the path belongs to another file", field="path", path=path)
    return claim.file_id


def ready_file(file_id: str) -> FileRecord:
    """The file's ready ``meta``: NotFound, or Gone once it is being deleted."""
    meta = aws.chunk_catalog().get_file(file_id)
    if meta is None:
        raise NotFound("no such file", file_id=file_id)
    if meta.status != FILE_READY:
        raise Gone("file was deleted", file_id=file_id)
    return meta
