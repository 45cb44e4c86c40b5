"""Chunk hashes the control plane computes itself: an import's (its object was never
declared), and any version's again on ``POST /files/{id}/rehash``. Edges never write
hashes; a ``warm`` report of a chunk whose hash is not known yet is checked here
against the origin.

The ``hash_chunks`` state machine runs ``plan_hashing`` (batches of at most
``HASH_BATCH_CHUNKS`` chunks and ``FSNODE_HASH_BATCH_BYTES``), ``hash_batch`` per batch
(one ranged GET pinned to the import's version id or ETag, hashed chunk by chunk,
digests kept in a DynamoDB item) and ``finish_hashing``, which writes the version
manifest with the hashes: once for an import (null -> hashes, never one hash to
another), or, for a repair, wherever the recorded hashes differ, logging each change.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.catalog import HASH_BATCH_CHUNKS
from fsnode_core.digests import chunks_digest
from fsnode_core.errors import Conflict, InvalidInput, Unavailable
from fsnode_core.ids import check_id, new_id
from fsnode_core.models import FileRecord
from fsnode_core.published import VersionManifest
from fsnode_core.store_errors import error_code

from chalicelib import aws, executions, manifests
from chalicelib.observability import logger, metrics
from chalicelib.settings import get_settings

MODE_IMPORT = "import"
MODE_REPAIR = "repair"
METRIC_HASHES_REPAIRED = "ChunkHashesRepaired"
_CHANGED_LOGGED = 50
_READ_BLOCK = 1024 * 1024


def start(meta: FileRecord, mode: str) -> str | None:
    """Start hashing ``meta``'s version; the execution's ARN (None: not configured, or
    the start failed and prune's repair is the fallback)."""
    if mode == MODE_IMPORT:
        name = f"hash-{meta.file_id}-{meta.version}"
    else:
        name = executions.digest_name("rehash", meta.file_id, meta.version, new_id())
    started = executions.start(
        get_settings().hash_state_machine_arn,
        name,
        {"file_id": meta.file_id, "version": meta.version, "mode": mode},
    )
    return started.arn if started else None


def run_inline(meta: FileRecord, mode: str) -> dict[str, Any]:
    """The job's steps in this process, for a control plane without the state machine
    (a local run without Step Functions); bounded by the caller's time limit."""
    job = {"file_id": meta.file_id, "version": meta.version, "mode": mode}
    for batch in plan(job)["batches"]:
        hash_batch(batch)
    return finish(job)


def plan(event: dict[str, Any]) -> dict[str, Any]:
    """The ``plan_hashing`` Lambda: the version's chunks in batches."""
    file_id, version, mode = _job(event)
    manifest = _fresh_manifest(file_id, version)
    per_batch = min(
        HASH_BATCH_CHUNKS, max(1, get_settings().hash_batch_bytes // manifest.chunk_size)
    )
    count = manifest.chunk_count
    batches = [
        {
            "file_id": file_id,
            "version": version,
            "batch": number,
            "first": first,
            "count": min(per_batch, count - first),
        }
        for number, first in enumerate(range(0, count, per_batch))
    ]
    return {
        "file_id": file_id,
        "version": version,
        "mode": mode,
        "chunks": count,
        "batches": batches,
    }


def hash_batch(event: dict[str, Any]) -> dict[str, Any]:
    """The ``hash_batch`` Lambda: hash chunks ``first .. first+count-1`` from the origin
    and keep their digests for ``finish_hashing``."""
    file_id = check_id(str(event.get("file_id", "")), "file_id")
    version = check_id(str(event.get("version", "")), "version")
    batch, first, count = (int(event[name]) for name in ("batch", "first", "count"))
    manifest = _fresh_manifest(file_id, version)
    if first < 0 or count < 1 or first + count > manifest.chunk_count:
        raise InvalidInput("the batch is outside the file", first=first, count=count)
    digests = origin_digests(manifest, first, count)
    aws.chunk_catalog().put_hash_batch(file_id, version, batch, b"".join(digests))
    return {"batch": batch, "chunks": count}


def finish(event: dict[str, Any]) -> dict[str, Any]:
    """The ``finish_hashing`` Lambda: write the hashes into the version manifest."""
    file_id, version, mode = _job(event)
    catalog = aws.chunk_catalog()
    manifest = _fresh_manifest(file_id, version)
    batches = catalog.hash_batches(file_id, version)
    raw = b"".join(batches[number] for number in sorted(batches))
    if len(raw) != 32 * manifest.chunk_count or sorted(batches) != list(range(len(batches))):
        raise Conflict(
            "the hashing batches do not cover the file", file_id=file_id, batches=len(batches)
        )
    hashed = raw.hex()
    changed = _changed(manifest.chunk_sha256, hashed)
    outcome = "unchanged"
    if manifest.chunk_sha256 is not None and changed and mode != MODE_REPAIR:
        # An import's hashes are set once; only a repair replaces recorded ones.
        logger.warning(
            "hashes differ from the recorded ones; kept (rehash repairs)",
            extra={"file_id": file_id, "version": version, "chunks": changed[:_CHANGED_LOGGED]},
        )
        outcome = "kept"
    elif not _still_kept(file_id, version):
        outcome = "gone"  # replaced or collected meanwhile: nothing serves it to hash for
    elif manifest.chunk_sha256 is None or changed:
        _rewrite(manifest, hashed, changed)
        outcome = "hashed" if manifest.chunk_sha256 is None else "repaired"
    catalog.delete_hash_batches(file_id, version, len(batches))
    return {
        "file_id": file_id,
        "version": version,
        "mode": mode,
        "outcome": outcome,
        "chunks": manifest.chunk_count,
        "changed": len(changed),
    }


def _still_kept(file_id: str, version: str) -> bool:
    meta = aws.chunk_catalog().get_file(file_id)
    return meta is not None and meta.version == version


def _rewrite(manifest: VersionManifest, hashed: str, changed: list[int]) -> None:
    digest = chunks_digest(hashed)
    manifests.put_manifest(replace(manifest, chunk_sha256=hashed, chunks_sha256=digest))
    aws.chunk_catalog().set_chunks_sha256(manifest.file_id, manifest.version, digest)
    if manifest.chunk_sha256 is not None:
        metrics.add_metric(name=METRIC_HASHES_REPAIRED, unit="Count", value=len(changed))
        logger.warning(
            "recorded chunk hashes repaired",
            extra={
                "file_id": manifest.file_id,
                "version": manifest.version,
                "chunks": changed[:_CHANGED_LOGGED],
                "count": len(changed),
            },
        )


def _changed(recorded: str | None, hashed: str) -> list[int]:
    if recorded is None:
        return []
    return [
        i
        for i in range(len(hashed) // 64)
        if recorded[i * 64 : (i + 1) * 64] != hashed[i * 64 : (i + 1) * 64]
    ]


def origin_digest(manifest: VersionManifest, index: int) -> str:
    """One chunk's SHA-256 read from the origin now (a ``warm`` report of a chunk whose
    hash is not known yet is checked against it)."""
    return origin_digests(manifest, index, 1)[0].hex()


def origin_digests(manifest: VersionManifest, first: int, count: int) -> list[bytes]:
    """Raw SHA-256 of chunks ``first .. first+count-1``: one ranged GET pinned to the
    version's object (its version id, else its ETag), hashed as it streams."""
    size, chunk = manifest.size, manifest.chunk_size
    start, end = first * chunk, min((first + count) * chunk, size) - 1
    origin = manifest.origin
    kwargs: dict[str, Any] = {
        "Bucket": origin.bucket,
        "Key": origin.key,
        "Range": f"bytes={start}-{end}",
    }
    if origin.version_id:
        kwargs["VersionId"] = origin.version_id
    elif origin.etag:
        kwargs["IfMatch"] = f'"{origin.etag}"'
    try:
        body = aws.client("s3").get_object(**kwargs)["Body"]
        digests = []
        for index in range(first, first + count):
            length = min(chunk, size - index * chunk)
            digest = hashlib.sha256()
            while length:
                block = body.read(min(length, _READ_BLOCK))
                if not block:
                    raise Unavailable("the origin ended the read early", chunk=index)
                digest.update(block)
                length -= len(block)
            digests.append(digest.digest())
    except ClientError as exc:
        if error_code(exc) in ("PreconditionFailed", "412", "NoSuchVersion", "NoSuchKey"):
            raise Conflict(
                "the origin object changed or is gone", file_id=manifest.file_id
            ) from exc
        raise Unavailable("the origin could not be read") from exc
    except BotoCoreError as exc:
        raise Unavailable("the origin is unreachable") from exc
    return digests


def _fresh_manifest(file_id: str, version: str) -> VersionManifest:
    manifests.forget(file_id, version)
    return manifests.read_manifest(file_id, version)


def _job(event: dict[str, Any]) -> tuple[str, str, str]:
    file_id = check_id(str(event.get("file_id", "")), "file_id")
    version = check_id(str(event.get("version", "")), "version")
    mode = str(event.get("mode", MODE_IMPORT))
    if mode not in (MODE_IMPORT, MODE_REPAIR):
        raise InvalidInput("mode is import or repair", field="mode")
    return file_id, version, mode
