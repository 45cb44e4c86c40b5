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

from chalicelib import aws, gc, replication, validate
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


def start(body: dict[str, Any]) -> dict[str, Any]:
    """Open a multipart upload and presign one URL per part.

    With an existing ``file_id`` the upload is a new version of that file: the current
    version keeps serving until ``complete`` switches to the new one.
    """
    settings = get_settings()
    replaces = _current_version(body.get("file_id"))
    name = validate.string(body, "name", max_len=1024) or ""
    size = validate.integer(body, "size", low=0, high=MAX_FILE_SIZE)
    content_type = validate.string(body, "content_type", max_len=255,
                                   pattern=validate.HEADER_TEXT) or ""
    chunk_sha256 = validate.sha256_list(body, "chunk_sha256", chunk_count(size,
                                                                          settings.chunk_size))
    file_id, version = body["file_id"] if replaces else new_id(), new_id()
    key = f"files/{file_id}/{version}"
    s3 = aws.client("s3")
    try:
        upload_id = s3.create_multipart_upload(
            Bucket=settings.bucket, Key=key, ContentType=content_type
        )["UploadId"]
    except (ClientError, BotoCoreError) as exc:
        raise Unavailable("the origin bucket refused the upload") from exc
    now = int(time.time())
    aws.chunk_catalog().put_upload(PendingUpload(
        file_id=file_id, version=version, upload_id=upload_id, name=name, size=size,
        content_type=content_type, chunk_size=settings.chunk_size, chunk_sha256=chunk_sha256,
        bucket=settings.bucket, key=key, created_at=now, expires_at=now + UPLOAD_TTL_SECONDS,
        replaces=replaces,
    ), stale_before=now - URL_TTL_SECONDS if replaces else None)
    parts = [
        {
            "part_number": span.part_number,
            "offset": span.offset,
            "length": span.length,
            "url": s3.generate_presigned_url(
                "upload_part",
                Params={"Bucket": settings.bucket, "Key": key, "UploadId": upload_id,
                        "PartNumber": span.part_number},
                ExpiresIn=URL_TTL_SECONDS,
            ),
        }
        for span in part_layout(size, settings.chunk_size)
    ]
    metrics.add_metric(name=METRIC_UPLOAD_STARTED, unit="Count", value=1)
    return {"file_id": file_id, "version": version, "upload_id": upload_id,
            "chunk_size": settings.chunk_size, "part_size": part_size_for(settings.chunk_size),
            "parts": parts}


def complete(file_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Finish the upload, check its size, publish metadata, start replication."""
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
    try:
        s3.complete_multipart_upload(
            Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id,
            MultipartUpload={"Parts": parts},
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
    meta = FileRecord(
        file_id=file_id, version=upload.version, name=upload.name, size=upload.size,
        content_type=upload.content_type, etag=str(head["ETag"]).strip('"'),
        last_modified=int(head["LastModified"].timestamp()), chunk_size=upload.chunk_size,
        bucket=upload.bucket, key=upload.key, updated_at=int(time.time()),
        # A new version keeps the file's creation time (and so its place in listings).
        created_at=view.meta.created_at if view.meta is not None else int(time.time()),
    )
    chunks = []
    for index, digest in enumerate(upload.chunk_sha256):
        offset, length = chunk_bounds(index, upload.size, upload.chunk_size)
        chunks.append(ChunkRecord(file_id=file_id, version=upload.version, index=index,
                                  offset=offset, length=length, sha256=digest))
    try:
        catalog.publish(meta, chunks, upload.upload_id, replaces=upload.replaces)
    except Conflict:
        current = catalog.get_file(file_id)
        if current is not None and current.version == upload.version:
            return current.to_api()  # a concurrent complete published it
        if upload.replaces is not None:
            _reject(upload, "the version it replaces is no longer current")
            raise Conflict("the file changed or was deleted during the upload",
                           file_id=file_id) from None
        raise
    metrics.add_metric(name=METRIC_UPLOAD_COMPLETED, unit="Count", value=1)
    if upload.replaces is not None:
        gc.start(file_id, upload.replaces)  # the old version goes; prune retries a failure
    replication.after_upload(file_id, upload.version)
    return meta.to_api()


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


def _parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``parts`` as S3 wants them: numbered 1, 2, ... in order, each with its ETag."""
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
        out.append({"PartNumber": position, "ETag": part["etag"]})
    return out


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
