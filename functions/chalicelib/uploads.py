"""Uploads straight to S3 with presigned multipart parts; metadata only once complete."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.chunks import chunk_bounds, chunk_count, part_layout, part_size_for
from fsnode_core.errors import Conflict, Gone, InvalidInput, NotFound, Unavailable
from fsnode_core.ids import check_id, new_id
from fsnode_core.models import FILE_READY, ChunkRecord, FileRecord, PendingUpload

from chalicelib import aws, gc, replication, upload_parts, validate
from chalicelib.observability import (
    METRIC_UPLOAD_COMPLETED,
    METRIC_UPLOAD_REJECTED,
    METRIC_UPLOAD_STARTED,
    logger,
    metrics,
)
from chalicelib.settings import get_settings

MAX_FILE_SIZE = 5 * 1024**4  # S3's object limit
URL_TTL_SECONDS = 3600
UPLOAD_TTL_SECONDS = 7 * 24 * 3600
MAX_PARTS = 10_000  # S3's limit per multipart upload
_PUBLISH_ATTEMPTS = 3


def start(body: dict[str, Any]) -> dict[str, Any]:
    """Open a multipart upload and presign one URL per part, bound to the part's SHA-256.

    With an existing ``file_id`` the upload is a new version of that file: the current
    version keeps serving until ``complete`` switches to the new one. An optional expiry
    (``expires_at`` or ``expires_in_seconds``) is set on the file when it is published;
    without one a new version keeps the file's expiry.
    """
    settings = get_settings()
    now = int(time.time())
    file_expires_at = validate.expiry(body, now)
    replaces = _current_version(body.get("file_id"))
    name = validate.string(body, "name", max_len=1024) or ""
    size = validate.integer(body, "size", low=0, high=MAX_FILE_SIZE)
    content_type = validate.string(body, "content_type", max_len=255,
                                   pattern=validate.HEADER_TEXT) or ""
    chunk_sha256 = validate.sha256_list(body, "chunk_sha256", chunk_count(size,
                                                                          settings.chunk_size))
    layout = part_layout(size, settings.chunk_size)
    part_sha256 = validate.sha256_list(body, "part_sha256", len(layout))
    file_id, version = body["file_id"] if replaces else new_id(), new_id()
    key = f"files/{file_id}/{version}"
    s3 = aws.client("s3")
    try:
        # SHA256 on the upload: S3 then takes no part without its checksum.
        upload_id = s3.create_multipart_upload(
            Bucket=settings.bucket, Key=key, ContentType=content_type,
            ChecksumAlgorithm="SHA256",
        )["UploadId"]
    except (ClientError, BotoCoreError) as exc:
        raise Unavailable("the origin bucket refused the upload") from exc
    upload = PendingUpload(
        file_id=file_id, version=version, upload_id=upload_id, name=name, size=size,
        content_type=content_type, chunk_size=settings.chunk_size, chunk_sha256=chunk_sha256,
        bucket=settings.bucket, key=key, created_at=now, expires_at=now + UPLOAD_TTL_SECONDS,
        replaces=replaces, part_sha256=part_sha256, file_expires_at=file_expires_at,
    )
    aws.chunk_catalog().put_upload(upload,
                                   stale_before=now - URL_TTL_SECONDS if replaces else None)
    parts = [
        {
            "part_number": span.part_number,
            "offset": span.offset,
            "length": span.length,
            "sha256": digest,
            # The URL signs this header: the PUT must send it as given.
            "headers": {"x-amz-checksum-sha256": upload_parts.checksum_b64(digest)},
            "url": upload_parts.part_url(upload, span.part_number, digest, URL_TTL_SECONDS),
        }
        for span, digest in zip(layout, part_sha256, strict=True)
    ]
    metrics.add_metric(name=METRIC_UPLOAD_STARTED, unit="Count", value=1)
    return {"file_id": file_id, "version": version, "upload_id": upload_id,
            "chunk_size": settings.chunk_size, "part_size": part_size_for(settings.chunk_size),
            "parts": parts}


def complete(file_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Check the parts against the declared layout and SHA-256s, finish the upload,
    publish metadata, start replication. A mismatch discards the upload: nothing shows."""
    check_id(file_id, "file_id")
    parts = _parts(body)
    catalog = aws.chunk_catalog()
    view = catalog.file_view(file_id)
    if view.meta is not None and view.upload is None:
        return view.meta.to_api()  # a retried complete: already published
    upload = view.upload
    if upload is None:
        raise NotFound("no upload in progress for this file", file_id=file_id)
    expected = len(part_layout(upload.size, upload.chunk_size))
    if len(parts) != expected:
        raise InvalidInput(f"parts must list all {expected} parts", field="parts",
                           expected=expected)
    s3 = aws.client("s3")
    still_open = _check_parts(s3, upload)
    try:
        if still_open:
            s3.complete_multipart_upload(
                Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id,
                MultipartUpload={"Parts": upload_parts.completion(upload, parts)},
            )
        head = s3.head_object(Bucket=upload.bucket, Key=upload.key)
    except ClientError as exc:
        _reject(upload, "the origin refused to complete the upload")
        raise InvalidInput("the upload could not be completed (missing or wrong parts)",
                           file_id=file_id) from exc
    except BotoCoreError as exc:
        raise Unavailable("the origin bucket is unreachable") from exc
    if int(head["ContentLength"]) != upload.size:
        _reject(upload, "size mismatch")
        raise InvalidInput("uploaded size does not match the declared size", file_id=file_id,
                           declared=upload.size, uploaded=int(head["ContentLength"]))
    chunks = []
    for index, digest in enumerate(upload.chunk_sha256):
        offset, length = chunk_bounds(index, upload.size, upload.chunk_size)
        chunks.append(ChunkRecord(file_id=file_id, version=upload.version, index=index,
                                  offset=offset, length=length, sha256=digest))
    current = view.meta
    for _ in range(_PUBLISH_ATTEMPTS):
        meta = _published(upload, head, current)
        try:
            catalog.publish(meta, chunks, upload.upload_id, replaces=upload.replaces,
                            replaced_expiry=current.expires_at if current is not None else None)
            break
        except Conflict:
            current = catalog.get_file(file_id)
            if current is not None and current.version == upload.version:
                return current.to_api()  # a concurrent complete published it
            if (upload.replaces is not None and current is not None
                    and current.version == upload.replaces and current.status == FILE_READY):
                continue  # the file's expiry changed meanwhile: carry the new one over
            if upload.replaces is None:
                # A new file: only a concurrent complete (still committing) or a discard
                # took the upload item. Neither is ours to undo.
                raise
            _reject(upload, "the version it replaces is no longer current")
            raise Conflict("the file changed or was deleted during the upload",
                           file_id=file_id) from None
    else:
        _reject(upload, "the file kept changing during the upload")
        raise Conflict("the file kept changing during the upload; upload again",
                       file_id=file_id)
    metrics.add_metric(name=METRIC_UPLOAD_COMPLETED, unit="Count", value=1)
    if upload.replaces is not None:
        gc.start(file_id, upload.replaces)  # the old version goes; prune retries a failure
    replication.after_upload(file_id, upload.version)
    return meta.to_api()


def _published(upload: PendingUpload, head: dict[str, Any],
               current: FileRecord | None) -> FileRecord:
    """The ``meta`` item a completed upload publishes. The expiry asked for at init wins;
    else a new version keeps the file's (it is the file's, not a version's)."""
    now = int(time.time())
    expires_at = upload.file_expires_at
    if expires_at is None and upload.replaces is not None and current is not None:
        expires_at = current.expires_at
    return FileRecord(
        file_id=upload.file_id, version=upload.version, name=upload.name, size=upload.size,
        content_type=upload.content_type, etag=str(head["ETag"]).strip('"'),
        last_modified=int(head["LastModified"].timestamp()), chunk_size=upload.chunk_size,
        bucket=upload.bucket, key=upload.key, updated_at=now, expires_at=expires_at,
        # A new version keeps the file's creation time (and so its place in listings).
        created_at=current.created_at if current is not None else now,
    )


def _current_version(file_id: Any) -> str | None:
    """The version an overwrite replaces (None for a new file)."""
    if file_id is None:
        return None
    check_id(file_id, "file_id")
    meta = aws.chunk_catalog().get_file(file_id)
    if meta is None:
        raise NotFound("no such file", file_id=file_id)
    if meta.status != FILE_READY:
        raise Gone("file was deleted", file_id=file_id)
    return meta.version


def _parts(body: dict[str, Any]) -> list[str]:
    """The ETags of ``parts``, which must be numbered 1, 2, ... in order."""
    parts = body.get("parts")
    if not isinstance(parts, list) or len(parts) > MAX_PARTS:
        raise InvalidInput(f"parts must be a list of at most {MAX_PARTS} parts", field="parts")
    out = []
    for position, part in enumerate(parts, start=1):
        if (not isinstance(part, dict) or part.get("part_number") != position
                or isinstance(part.get("part_number"), bool)
                or not isinstance(part.get("etag"), str) or not part["etag"]
                or len(part["etag"]) > 128):
            raise InvalidInput("each part needs part_number (in order) and etag",
                               field="parts", position=position)
        out.append(part["etag"])
    return out


def _check_parts(s3: Any, upload: PendingUpload) -> bool:
    """Refuse (and discard) an upload whose parts in S3 are not the declared ones.

    False when S3 no longer has the upload open but its object exists: an earlier
    complete (which checked the parts) finished it and this one only has to publish.
    """
    try:
        wrong = upload_parts.mismatch(s3, upload)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
            raise Unavailable("the origin bucket could not list the upload's parts") from exc
        if _object_exists(s3, upload):
            return False
        # Aborted outside fsnode (a lifecycle rule) or never finished: not ours to
        # discard here; the upload item expires with its TTL.
        raise Conflict("the upload is no longer open in S3", file_id=upload.file_id) from exc
    except BotoCoreError as exc:
        raise Unavailable("the origin bucket is unreachable") from exc
    if wrong is not None:
        _reject(upload, wrong.reason)
        raise InvalidInput(f"the upload was refused: {wrong.reason}", field="parts",
                           file_id=upload.file_id, **wrong.details)
    return True


def _object_exists(s3: Any, upload: PendingUpload) -> bool:
    try:
        s3.head_object(Bucket=upload.bucket, Key=upload.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise Unavailable("the origin bucket could not be read") from exc
    except BotoCoreError as exc:
        raise Unavailable("the origin bucket is unreachable") from exc
    return True


def _reject(upload: PendingUpload, reason: str) -> None:
    """Leave nothing visible: abort the upload or delete the object, forget the upload."""
    s3 = aws.client("s3")
    metrics.add_metric(name=METRIC_UPLOAD_REJECTED, unit="Count", value=1)
    logger.warning("upload rejected", extra={"file_id": upload.file_id, "reason": reason})
    # Aborting fails once the upload was completed: the object itself goes below.
    with contextlib.suppress(ClientError):
        s3.abort_multipart_upload(Bucket=upload.bucket, Key=upload.key,
                                  UploadId=upload.upload_id)
    try:
        s3.delete_object(Bucket=upload.bucket, Key=upload.key)
    except ClientError:
        logger.exception("could not delete a rejected upload's object")
    with contextlib.suppress(Conflict):  # someone else discarded it first
        aws.chunk_catalog().discard_upload(upload.file_id, upload.upload_id)


def get(file_id: str) -> dict[str, Any]:
    """A visible file's record."""
    check_id(file_id, "file_id")
    meta = aws.chunk_catalog().get_file(file_id)
    if meta is None:
        raise NotFound("no such file", file_id=file_id)
    return meta.to_api()


def list_page(query: dict[str, str] | None) -> dict[str, Any]:
    """A page of files and the next page's token."""
    query = query or {}
    limit = validate.query_integer(query, "limit", low=1, high=1000, default=100) or 100
    files, token = aws.chunk_catalog().list_files(limit, query.get("next_token"))
    return {"files": [meta.to_api() for meta in files], "next_token": token}
