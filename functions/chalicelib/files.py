"""Files beyond upload: delete (tombstone, collected after the grace period), expiry,
import of an object already in S3, and the hash repair route."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.content_types import DEFAULT_CONTENT_TYPE, content_type_for
from fsnode_core.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound, Unavailable
from fsnode_core.ids import check_id
from fsnode_core.models import FILE_DELETING, FILE_READY, SOURCE_IMPORT, FileRecord
from fsnode_core.paths import check_path, path_problem
from fsnode_core.store_errors import error_code

from chalicelib import aws, file_paths, hashing, lifecycle, manifests, publisher, validate
from chalicelib.observability import METRIC_FILE_DELETED, METRIC_FILE_IMPORTED, logger, metrics
from chalicelib.settings import get_settings

MAX_KEY_LENGTH = 1024
_ATTEMPTS = 3  # a change publishing meanwhile moves the file's seq: read again
# What S3 calls an object whose uploader named no type: the extension decides instead.
_GENERIC_TYPES = {DEFAULT_CONTENT_TYPE, "binary/octet-stream"}


def delete(file_id: str) -> dict[str, Any]:
    """Tombstone the current version and free its path (202); the file is collected once
    the grace period is over. Repeating it answers the same."""
    check_id(file_id, "file_id")
    catalog = aws.chunk_catalog()
    for _ in range(_ATTEMPTS):
        meta = catalog.get_file(file_id)
        if meta is None:
            raise NotFound("no such file", file_id=file_id)
        if meta.status != FILE_READY:
            break
        try:
            meta = lifecycle.tombstone(meta)
        except Conflict:
            continue  # an overwrite or an expiry change landed in between: look again
        metrics.add_metric(name=METRIC_FILE_DELETED, unit="Count", value=1)
        break
    else:
        raise Conflict("the file kept changing while deleting; retry", file_id=file_id)
    return {"file_id": file_id, "version": meta.version, "status": FILE_DELETING}


def set_expiry(file_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Set (``expires_at`` or ``expires_in_seconds``) or clear (``expires_at: null``) the
    expiry of a ready file; prune deletes it once the expiry has passed. The expiry is
    the file's, not a version's: a new version keeps it."""
    check_id(file_id, "file_id")
    if "expires_at" not in body and "expires_in_seconds" not in body:
        raise InvalidInput(
            "give expires_at (unix seconds, or null to clear it) or expires_in_seconds",
            field="expires_at",
        )
    now = int(time.time())
    expires_at = validate.expiry(body, now)
    if expires_at is None and "expires_at" not in body:
        raise InvalidInput("expires_in_seconds must be an integer", field="expires_in_seconds")
    catalog = aws.chunk_catalog()
    for _ in range(_ATTEMPTS):
        meta = file_paths.ready_file(file_id)
        try:
            updated = catalog.set_expiry(
                meta, expires_at, seq=publisher.next_seq(meta.seq), now=now
            )
        except Conflict:
            continue  # a new version or a tombstone landed in between: look again
        publisher.publish(updated)
        logger.info("file expiry set", extra={"file_id": file_id, "expires_at": expires_at})
        return updated.to_api()
    raise Conflict("the file kept changing; retry", file_id=file_id)


def import_object(body: dict[str, Any]) -> dict[str, Any]:
    """Register an object already in S3, pinned to its version id or ETag, at ``path``
    (default: its key). Its chunks are hashed by the control plane's hashing job.

    Ids derive from the pinned object, so a retried import (or a second import of the
    same bytes) answers the record the first one wrote instead of duplicating it; an
    expiry given with it is set on that record.
    """
    settings = get_settings()
    now = int(time.time())
    expires_at = validate.expiry(body, now)
    bucket = validate.string(body, "bucket", max_len=63) or ""
    key = validate.string(body, "key", max_len=MAX_KEY_LENGTH, pattern=validate.NO_CONTROL) or ""
    version_id = validate.string(
        body, "version_id", max_len=1024, optional=True, pattern=validate.TOKEN_TEXT
    )
    etag = validate.string(body, "etag", max_len=128, optional=True, pattern=validate.ETAG_TEXT)
    content_type = validate.string(
        body, "content_type", max_len=255, optional=True, pattern=validate.HEADER_TEXT
    )
    raw_path = body.get("path")
    if raw_path is None and path_problem(key) is not None:
        raise InvalidInput("this key is not a valid path: give a path", field="path")
    path = check_path(key if raw_path is None else raw_path, "path")
    if version_id and etag:
        raise InvalidInput("give version_id or etag, not both", field="version_id")
    if bucket not in settings.import_buckets:
        raise Forbidden("imports from this bucket are not allowed", bucket=bucket)
    head = _head(bucket, key, version_id, etag)
    etag_seen = str(head["ETag"]).strip('"')
    pinned_version = head.get("VersionId") if head.get("VersionId") not in (None, "null") else None
    digest = hashlib.blake2b(
        "\x00".join((bucket, key, pinned_version or "", etag_seen)).encode(), digest_size=32
    ).hexdigest()
    file_id, version = digest[:32], digest[32:]
    stored_type = str(head.get("ContentType") or DEFAULT_CONTENT_TYPE)
    seq = publisher.next_seq(0)
    meta = FileRecord(
        file_id=file_id,
        version=version,
        path=path,
        size=int(head["ContentLength"]),
        content_type=content_type
        or (content_type_for(path) if stored_type in _GENERIC_TYPES else stored_type),
        etag=etag_seen,
        last_modified=int(head["LastModified"].timestamp()),
        chunk_size=settings.chunk_size,
        bucket=bucket,
        key=key,
        created_at=now,
        updated_at=now,
        source=SOURCE_IMPORT,
        version_id=pinned_version,
        expires_at=expires_at,
        seq=seq,
        published_seq=seq,
    )
    existing = aws.chunk_catalog().get_file(file_id)
    if existing is None:
        manifests.put_manifest(manifests.manifest_of(meta, None))
        try:
            aws.chunk_catalog().put_import(meta, stale_claim=file_paths.import_claim(path, file_id))
        except Conflict as exc:
            if exc.details.get("path_taken"):
                raise
            existing = aws.chunk_catalog().get_file(file_id)  # a concurrent import won
        else:
            publisher.publish(meta)
            hashing.start(meta, hashing.MODE_IMPORT)
            metrics.add_metric(name=METRIC_FILE_IMPORTED, unit="Count", value=1)
            return meta.to_api()
    return _again(existing, version, expires_at)


def _again(existing: FileRecord | None, version: str, expires_at: int | None) -> dict[str, Any]:
    """A repeated import: the first one's record (with the expiry this one gives)."""
    if existing is None or existing.version != version:
        raise Conflict("this object was imported and then replaced at its path")
    if existing.status != FILE_READY:
        raise Gone("this import was deleted", file_id=existing.file_id)
    if expires_at is not None and existing.expires_at != expires_at:
        return set_expiry(existing.file_id, {"expires_at": expires_at})
    return existing.to_api()


def rehash(file_id: str) -> dict[str, Any]:
    """``POST /files/{id}/rehash``: hash the current version from S3 again and replace
    recorded hashes that differ (202 with the job's execution; without a hashing state
    machine configured the job runs here and its outcome is answered)."""
    check_id(file_id, "file_id")
    meta = file_paths.ready_file(file_id)
    if get_settings().hash_state_machine_arn is None:
        outcome = hashing.run_inline(meta, hashing.MODE_REPAIR)
        return {"file_id": file_id, "version": meta.version, "execution": None, "outcome": outcome}
    execution = hashing.start(meta, hashing.MODE_REPAIR)
    if execution is None:
        raise Unavailable("the hashing job cannot be started now")
    return {"file_id": file_id, "version": meta.version, "execution": execution}


def _head(bucket: str, key: str, version_id: str | None, etag: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    if etag:
        kwargs["IfMatch"] = etag if etag.startswith('"') else f'"{etag}"'
    try:
        head: dict[str, Any] = aws.client("s3").head_object(**kwargs)
    except ClientError as exc:
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchKey", "NoSuchVersion", "NotFound", "NoSuchBucket"):
            raise NotFound("no such object (or object version)", bucket=bucket) from exc
        if code in ("412", "PreconditionFailed") or status == 412:
            raise Conflict("the object's ETag does not match", bucket=bucket) from exc
        if code in ("400", "InvalidArgument") or status == 400:
            raise InvalidInput("the origin refused the object reference", bucket=bucket) from exc
        raise Unavailable("the origin bucket could not be read", bucket=bucket) from exc
    except BotoCoreError as exc:
        raise Unavailable("the origin bucket is unreachable") from exc
    return head
