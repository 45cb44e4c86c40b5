"""Uploads straight to S3 with presigned multipart parts; metadata only once complete.

Sized for large files: the declared hashes are written at init as items of their own
(the pending version's chunk items, part hashes in batches), so no item grows with the
file, ``complete`` takes a bounded number of DynamoDB requests, and part URLs come a
page at a time (``POST /files`` answers the first page, ``GET /files/ID/parts`` the
rest, freshly signed). An upload that fails, is replaced or is abandoned is discarded
whole: its S3 upload aborted and every item it wrote deleted.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.chunks import PartSpan, chunk_bounds, chunk_count, part_layout, part_size_for
from fsnode_core.errors import Conflict, FsnodeError, Gone, InvalidInput, NotFound, Unavailable
from fsnode_core.ids import check_id, new_id
from fsnode_core.models import (
    FILE_READY,
    UPLOAD_DECLARING,
    UPLOAD_OPEN,
    ChunkRecord,
    FileRecord,
    PendingUpload,
)
from fsnode_core.store_errors import error_code

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
MAX_PARTS = 10_000  # S3's limit per multipart upload (parts grow to fit: fsnode_core.chunks)
# Part URLs per answer. In Lambda every URL carries the role's session token (~1.5 KB
# each): 500 keep an answer near 1 MB, far from Lambda's 6 MB response limit.
PARTS_PAGE = 500
# POST /files declares every chunk's and part's SHA-256 (~90 bytes per 4 MiB chunk): 4 MiB
# takes ~180 GiB at 4 MiB chunks and stays under Lambda's 6 MB request limit.
MAX_INIT_BODY = 4 * 1024 * 1024
METRIC_UPLOAD_ABANDONED = "UploadAbandoned"
_PUBLISH_ATTEMPTS = 3


def start(body: dict[str, Any]) -> dict[str, Any]:
    """Open a multipart upload, record its declared hashes, and presign the first page of
    part URLs, each bound to its part's SHA-256.

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
    catalog = aws.chunk_catalog()
    if replaces:
        _replace_stale(file_id, now)
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
        content_type=content_type, chunk_size=settings.chunk_size, bucket=settings.bucket,
        key=key, created_at=now, expires_at=now + UPLOAD_TTL_SECONDS, replaces=replaces,
        file_expires_at=file_expires_at, state=UPLOAD_DECLARING,
        urls_until=now + URL_TTL_SECONDS,
    )
    try:
        catalog.put_upload(upload)
    except FsnodeError:
        _abort(upload)
        raise
    try:
        catalog.declare_upload(upload, _chunks(upload, chunk_sha256), part_sha256)
    except FsnodeError:
        _discard(upload, "its hashes could not be recorded")
        raise
    upload.part_sha256 = part_sha256
    metrics.add_metric(name=METRIC_UPLOAD_STARTED, unit="Count", value=1)
    return {"file_id": file_id, "version": version, "upload_id": upload_id,
            "chunk_size": settings.chunk_size,
            "part_size": part_size_for(settings.chunk_size, size),
            **_page(upload, layout, 1, PARTS_PAGE)}


def part_urls(file_id: str, query: dict[str, str] | None) -> dict[str, Any]:
    """A page of freshly signed part URLs of the file's upload in flight, from part
    ``first`` (default 1), at most ``limit`` (default and most: ``PARTS_PAGE``)."""
    check_id(file_id, "file_id")
    query = query or {}
    first = validate.query_integer(query, "first", low=1, high=MAX_PARTS, default=1) or 1
    limit = validate.query_integer(query, "limit", low=1, high=PARTS_PAGE,
                                   default=PARTS_PAGE) or PARTS_PAGE
    catalog = aws.chunk_catalog()
    upload = catalog.get_upload(file_id)
    if upload is None:
        raise NotFound("no upload in progress for this file", file_id=file_id)
    if upload.state != UPLOAD_OPEN:
        raise Conflict(f"the upload is {upload.state}, not open", file_id=file_id)
    if not upload.part_sha256:
        raise Conflict("this upload declared no part hashes: start it again", file_id=file_id)
    layout = part_layout(upload.size, upload.chunk_size)
    if first > len(layout):
        raise InvalidInput(f"first must be a part number in 1..{len(layout)}", field="first",
                           part_count=len(layout))
    # Noted before the URLs exist: an overwrite never replaces an upload whose URLs live.
    catalog.touch_upload(upload, int(time.time()) + URL_TTL_SECONDS)
    return {"file_id": file_id, "version": upload.version, "upload_id": upload.upload_id,
            **_page(upload, layout, first, limit)}


def _page(upload: PendingUpload, layout: list[PartSpan], first: int,
          limit: int) -> dict[str, Any]:
    """Parts ``first..first+limit-1`` with their presigned URLs, and where the next page
    starts (None: this page ends the upload)."""
    spans = layout[first - 1:first - 1 + limit]
    parts = []
    for span in spans:
        digest = upload.part_sha256[span.part_number - 1]
        parts.append({
            "part_number": span.part_number,
            "offset": span.offset,
            "length": span.length,
            "sha256": digest,
            # The URL signs this header: the PUT must send it as given.
            "headers": {"x-amz-checksum-sha256": upload_parts.checksum_b64(digest)},
            "url": upload_parts.part_url(upload, span.part_number, digest, URL_TTL_SECONDS),
        })
    after = first + len(spans)
    return {"part_count": len(layout), "parts": parts,
            "next_part": after if after <= len(layout) else None}


def _chunks(upload: PendingUpload, digests: list[str]) -> list[ChunkRecord]:
    """The version's chunk items, from the declared digests."""
    out = []
    for index, digest in enumerate(digests):
        offset, length = chunk_bounds(index, upload.size, upload.chunk_size)
        out.append(ChunkRecord(file_id=upload.file_id, version=upload.version, index=index,
                               offset=offset, length=length, sha256=digest))
    return out


def _replace_stale(file_id: str, now: int) -> None:
    """Make room for an overwrite: Conflict while another upload of the file may still
    send parts; an upload whose every part URL has expired is discarded first, so an
    abandoned overwrite does not block the file for days."""
    current = aws.chunk_catalog().get_upload(file_id)
    if current is None:
        return
    live_until = current.urls_until or current.created_at + URL_TTL_SECONDS  # older items
    if live_until >= now or not _discard(
            current, "replaced by a new upload after its part URLs expired", stale_at=now):
        raise Conflict("another upload of this file is in progress", file_id=file_id)


def complete(file_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Check the parts against the declared layout and SHA-256s, finish the upload,
    publish metadata, start replication. A mismatch discards the upload: nothing shows.

    Bounded in DynamoDB requests whatever the file's size: the upload and its part hashes
    (one Query), the file's ``meta`` (one GetItem), the publishing transaction and one
    batch delete; the chunk items were written at init.
    """
    check_id(file_id, "file_id")
    parts = _parts(body)
    catalog = aws.chunk_catalog()
    upload = catalog.get_upload(file_id)
    current = catalog.get_file(file_id)
    if upload is None:
        if current is not None:
            return current.to_api()  # a retried complete: already published
        raise NotFound("no upload in progress for this file", file_id=file_id)
    if upload.state != UPLOAD_OPEN:
        raise Conflict(f"the upload is {upload.state}, not open", file_id=file_id)
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
    # Chunk items exist already, except for an upload item from before they were written
    # at init (it carries its chunk hashes inline).
    chunks = _chunks(upload, upload.chunk_sha256)
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


def sweep_abandoned(now: int | None = None) -> list[str]:
    """Discard every upload whose time to complete is up (prune runs this): its S3
    upload aborted, any object a half-finished complete left deleted, its items gone.

    Returns the file ids whose upload was discarded."""
    moment = int(time.time()) if now is None else now
    discarded = []
    for upload in aws.chunk_catalog().uploads_due(moment):
        if _discard(upload, "abandoned: not completed in time"):
            discarded.append(upload.file_id)
    if discarded:
        metrics.add_metric(name=METRIC_UPLOAD_ABANDONED, unit="Count", value=len(discarded))
    return discarded


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
        if error_code(exc) != "NoSuchUpload":
            raise Unavailable("the origin bucket could not list the upload's parts") from exc
        if _object_exists(s3, upload):
            return False
        # Aborted outside fsnode (a lifecycle rule) or never finished: not ours to
        # discard here; the sweep discards it when its time is up.
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
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise Unavailable("the origin bucket could not be read") from exc
    except BotoCoreError as exc:
        raise Unavailable("the origin bucket is unreachable") from exc
    return True


def _reject(upload: PendingUpload, reason: str) -> None:
    """A refused upload leaves nothing visible (see ``_discard``)."""
    metrics.add_metric(name=METRIC_UPLOAD_REJECTED, unit="Count", value=1)
    _discard(upload, reason)


def _discard(upload: PendingUpload, reason: str, *, stale_at: int | None = None) -> bool:
    """Abort the upload, delete its object if one was completed, forget its items.

    False when the upload was completed or replaced meanwhile, or (with ``stale_at``)
    handed out part URLs that live past it: nothing of it is ours to delete then."""
    try:
        # The mark comes first: once it holds, no complete can publish this upload.
        aws.chunk_catalog().discard_upload(upload, stale_at=stale_at)
    except Conflict:
        return False  # someone else completed, replaced or discarded it first
    logger.warning("upload discarded", extra={"file_id": upload.file_id,
                                              "version": upload.version, "reason": reason})
    s3 = aws.client("s3")
    _abort(upload)
    try:
        s3.delete_object(Bucket=upload.bucket, Key=upload.key)
    except (ClientError, BotoCoreError):
        logger.exception("could not delete a discarded upload's object")
    return True


def _abort(upload: PendingUpload) -> None:
    # Aborting fails once the upload was completed (or aborted): nothing more to do here.
    with contextlib.suppress(ClientError, BotoCoreError):
        aws.client("s3").abort_multipart_upload(Bucket=upload.bucket, Key=upload.key,
                                                UploadId=upload.upload_id)


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
