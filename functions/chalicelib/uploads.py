"""Uploads straight to S3 with presigned multipart parts; visible only once complete.

Sized for large files: the declared chunk and part hashes go to S3 at init (the
version's ``UploadDeclaration``, one object), so no DynamoDB item grows with the file
and init and ``complete`` take a fixed number of requests whatever the chunk count;
part URLs come a page at a time (``POST /files`` answers the first page, ``GET
/files/ID/parts`` the rest, freshly signed). An upload that fails, is replaced or is
abandoned is discarded: its S3 upload aborted, its item deleted, and its version
retired so garbage collection removes what it left in S3 (request handlers never
delete S3 objects).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.chunks import PartSpan, chunk_count, part_layout, part_size_for
from fsnode_core.content_types import content_type_for
from fsnode_core.digests import chunks_digest, join_digests
from fsnode_core.errors import Conflict, FsnodeError, InvalidInput, NotFound, Unavailable
from fsnode_core.ids import check_id, new_id
from fsnode_core.models import UPLOAD_DECLARING, UPLOAD_OPEN, PendingUpload
from fsnode_core.paths import listing_prefix_problem
from fsnode_core.published import UploadDeclaration
from fsnode_core.published_keys import data_key

from chalicelib import aws, file_paths, lifecycle, manifests, upload_parts, validate
from chalicelib.observability import METRIC_UPLOAD_STARTED, logger, metrics
from chalicelib.settings import get_settings

MAX_FILE_SIZE = 5 * 1024**4  # S3's object limit
URL_TTL_SECONDS = 3600
UPLOAD_TTL_SECONDS = 7 * 24 * 3600
MAX_PARTS = 10_000  # S3's limit per multipart upload (parts grow to fit: fsnode_core.chunks)
# Part URLs per answer. In Lambda every URL carries the role's session token (~1.5 KB
# each): 500 keep an answer near 1 MB, far from Lambda's 6 MB response limit.
PARTS_PAGE = 500
# POST /files declares every chunk's and part's SHA-256 (~66 bytes per chunk): 4 MiB takes
# about 63,000 chunks (250 GiB at 4 MiB chunks) and stays under Lambda's 6 MB request.
MAX_INIT_BODY = 4 * 1024 * 1024
METRIC_UPLOAD_ABANDONED = "UploadAbandoned"


def start(body: dict[str, Any]) -> dict[str, Any]:
    """Open a multipart upload to ``path`` (or a new version of ``file_id``), record its
    declared hashes in S3, and presign the first page of part URLs, each bound to its
    part's SHA-256.

    Uploading to a path a live file has makes a new version of that file: the current
    version keeps serving until ``complete`` switches to the new one. An optional expiry
    (``expires_at`` or ``expires_in_seconds``) is set on the file when it is published;
    without one a new version keeps the file's expiry.
    """
    settings = get_settings()
    now = int(time.time())
    file_expires_at = validate.expiry(body, now)
    size = validate.integer(body, "size", low=0, high=MAX_FILE_SIZE)
    content_type = validate.string(
        body, "content_type", max_len=255, optional=True, pattern=validate.HEADER_TEXT
    )
    chunk_sha256 = validate.sha256_list(
        body, "chunk_sha256", chunk_count(size, settings.chunk_size)
    )
    layout = part_layout(size, settings.chunk_size)
    part_sha256 = validate.sha256_list(body, "part_sha256", len(layout))
    target = file_paths.upload_target(body, now)
    content_type = content_type or content_type_for(target.path)
    _make_room(target.file_id, now)
    version = new_id()
    key = data_key(target.file_id, version)
    try:
        # SHA256 on the upload: S3 then takes no part without its checksum.
        upload_id = aws.client("s3").create_multipart_upload(
            Bucket=settings.bucket,
            Key=key,
            ContentType=content_type,
            ChecksumAlgorithm="SHA256",
        )["UploadId"]
    except (ClientError, BotoCoreError) as exc:
        raise Unavailable("the origin bucket refused the upload") from exc
    upload = PendingUpload(
        file_id=target.file_id,
        version=version,
        upload_id=upload_id,
        path=target.path,
        size=size,
        content_type=content_type,
        chunk_size=settings.chunk_size,
        bucket=settings.bucket,
        key=key,
        created_at=now,
        expires_at=now + UPLOAD_TTL_SECONDS,
        chunks_sha256=chunks_digest(chunk_sha256),
        replaces=target.current.version if target.current else None,
        file_expires_at=file_expires_at,
        state=UPLOAD_DECLARING,
        urls_until=now + URL_TTL_SECONDS,
    )
    catalog = aws.chunk_catalog()
    try:
        catalog.put_upload(upload)
    except FsnodeError:
        _abort(upload)
        raise
    try:
        manifests.put_declaration(
            UploadDeclaration(
                file_id=upload.file_id,
                version=version,
                path=upload.path,
                size=size,
                chunk_size=upload.chunk_size,
                content_type=content_type,
                chunk_sha256=join_digests(chunk_sha256),
                part_sha256=join_digests(part_sha256),
            )
        )
        catalog.open_upload(upload)
    except FsnodeError:
        discard(upload, "its hashes could not be recorded")
        raise
    metrics.add_metric(name=METRIC_UPLOAD_STARTED, unit="Count", value=1)
    return {
        "file_id": upload.file_id,
        "version": version,
        "path": upload.path,
        "upload_id": upload_id,
        "chunk_size": settings.chunk_size,
        "part_size": part_size_for(settings.chunk_size, size),
        **_page(upload, part_sha256, layout, 1, PARTS_PAGE),
    }


def part_urls(file_id: str, query: Mapping[str, str] | None) -> dict[str, Any]:
    """A page of freshly signed part URLs of the file's upload in flight, from part
    ``first`` (default 1), at most ``limit`` (default and most: ``PARTS_PAGE``)."""
    check_id(file_id, "file_id")
    query = query or {}
    first = validate.query_integer(query, "first", low=1, high=MAX_PARTS, default=1) or 1
    limit = (
        validate.query_integer(query, "limit", low=1, high=PARTS_PAGE, default=PARTS_PAGE)
        or PARTS_PAGE
    )
    catalog = aws.chunk_catalog()
    upload = catalog.get_upload(file_id)
    if upload is None:
        raise NotFound("no upload in progress for this file", file_id=file_id)
    if upload.state != UPLOAD_OPEN:
        raise Conflict(f"the upload is {upload.state}, not open", file_id=file_id)
    layout = part_layout(upload.size, upload.chunk_size)
    if first > len(layout):
        raise InvalidInput(
            f"first must be a part number in 1..{len(layout)}",
            field="first",
            part_count=len(layout),
        )
    part_sha256 = manifests.read_declaration(file_id, upload.version).part_hashes()
    # Noted before the URLs exist: an overwrite never replaces an upload whose URLs live.
    catalog.touch_upload(upload, int(time.time()) + URL_TTL_SECONDS)
    return {
        "file_id": file_id,
        "version": upload.version,
        "upload_id": upload.upload_id,
        **_page(upload, part_sha256, layout, first, limit),
    }


def _page(
    upload: PendingUpload, part_sha256: list[str], layout: list[PartSpan], first: int, limit: int
) -> dict[str, Any]:
    """Parts ``first..first+limit-1`` with their presigned URLs, and where the next page
    starts (None: this page ends the upload)."""
    spans = layout[first - 1 : first - 1 + limit]
    parts = []
    for span in spans:
        digest = part_sha256[span.part_number - 1]
        parts.append(
            {
                "part_number": span.part_number,
                "offset": span.offset,
                "length": span.length,
                "sha256": digest,
                # The URL signs this header: the PUT must send it as given.
                "headers": {"x-amz-checksum-sha256": upload_parts.checksum_b64(digest)},
                "url": upload_parts.part_url(upload, span.part_number, digest, URL_TTL_SECONDS),
            }
        )
    after = first + len(spans)
    return {
        "part_count": len(layout),
        "parts": parts,
        "next_part": after if after <= len(layout) else None,
    }


def _make_room(file_id: str, now: int) -> None:
    """One upload per file: Conflict while another upload of the file may still send
    parts; one whose every part URL has expired is discarded first, so an abandoned
    upload does not block the file for days."""
    current = aws.chunk_catalog().get_upload(file_id)
    if current is None:
        return
    # The new upload writes the same file: the path stays claimed for it.
    if current.urls_until >= now or not discard(
        current,
        "replaced by a new upload after its part URLs expired",
        stale_at=now,
        free_path=False,
    ):
        raise Conflict("another upload of this file is in progress", file_id=file_id)


def cancel(file_id: str, query: Mapping[str, str] | None) -> dict[str, Any]:
    """``DELETE /files/{file_id}/upload?upload_id=U``: the uploader gives up its upload in
    flight (its part URLs stop mattering; the file, if any, keeps its current version).
    NotFound without an upload; Conflict when another upload is in flight."""
    check_id(file_id, "file_id")
    upload_id = validate.string(query or {}, "upload_id", max_len=1024, pattern=validate.TOKEN_TEXT)
    upload = aws.chunk_catalog().get_upload(file_id)
    if upload is None:
        raise NotFound("no upload in progress for this file", file_id=file_id)
    if upload.upload_id != upload_id or not discard(upload, "cancelled by its uploader"):
        raise Conflict("another upload of this file is in progress", file_id=file_id)
    return {"file_id": file_id, "version": upload.version, "status": "cancelled"}


def sweep_abandoned(now: int | None = None) -> list[str]:
    """Discard every upload whose time to complete is up (prune runs this). Returns the
    file ids whose upload was discarded."""
    moment = int(time.time()) if now is None else now
    discarded = [
        upload.file_id
        for upload in aws.chunk_catalog().uploads_due(moment)
        if discard(upload, "abandoned: not completed in time")
    ]
    if discarded:
        metrics.add_metric(name=METRIC_UPLOAD_ABANDONED, unit="Count", value=len(discarded))
    return discarded


def discard(
    upload: PendingUpload, reason: str, *, stale_at: int | None = None, free_path: bool = True
) -> bool:
    """Forget an upload: no ``complete`` can publish it from the first write on; its S3
    upload is aborted, its path freed if it was the file's first, and its version
    retired so garbage collection removes its declaration and any object it left.

    False when the upload was completed or replaced meanwhile, or (with ``stale_at``)
    handed out part URLs that live past it: nothing of it is ours to touch then."""
    catalog = aws.chunk_catalog()
    try:
        catalog.discard_upload(upload, stale_at=stale_at)
    except Conflict:
        return False  # someone else completed, replaced or discarded it first
    logger.warning(
        "upload discarded",
        extra={"file_id": upload.file_id, "version": upload.version, "reason": reason},
    )
    _abort(upload)
    now = int(time.time())
    entry = lifecycle.retired(upload.file_id, upload.version, now)
    entry.due = now  # nothing ever served it: no grace to give
    catalog.put_retired(entry)
    if free_path and upload.replaces is None and catalog.get_file(upload.file_id) is None:
        catalog.release_claim(upload.path, upload.file_id)
    lifecycle.collect_if_due(entry, now)
    return True


def _abort(upload: PendingUpload) -> None:
    # Aborting fails once the upload was completed (or aborted): nothing more to do here.
    with contextlib.suppress(ClientError, BotoCoreError):
        aws.client("s3").abort_multipart_upload(
            Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id
        )


def get(file_id: str) -> dict[str, Any]:
    """A visible file's record."""
    check_id(file_id, "file_id")
    meta = aws.chunk_catalog().get_file(file_id)
    if meta is None:
        raise NotFound("no such file", file_id=file_id)
    return meta.to_api()


def list_page(query: Mapping[str, str] | None) -> dict[str, Any]:
    """A page of live files whose path starts with ``prefix``, in path order, and the
    next page's token."""
    query = query or {}
    limit = validate.query_integer(query, "limit", low=1, high=1000, default=100) or 100
    prefix = query.get("prefix", "")
    problem = listing_prefix_problem(prefix)
    if problem is not None:
        raise InvalidInput(problem, field="prefix")
    files, token = aws.chunk_catalog().list_files(prefix, limit, query.get("next_token"))
    return {"prefix": prefix, "files": [meta.to_api() for meta in files], "next_token": token}
