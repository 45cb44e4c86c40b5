"""Files beyond upload: download plans, delete (tombstone + GC), expiry, import,
edge-reported hashes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core import placement
from fsnode_core.chunks import chunk_bounds, chunk_count
from fsnode_core.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    RangeNotSatisfiable,
    Unavailable,
)
from fsnode_core.ids import check_id
from fsnode_core.models import FILE_DELETING, FILE_READY, SOURCE_IMPORT, ChunkRecord, FileRecord
from fsnode_core.signing import SharePolicy
from fsnode_core.store_errors import error_code

from chalicelib import auth, aws, gc, secret_store, shares, validate
from chalicelib.observability import (
    METRIC_CHUNK_HASH_RECORDED,
    METRIC_FILE_DELETED,
    METRIC_FILE_IMPORTED,
    METRIC_PLAN_SERVED,
    logger,
    metrics,
)
from chalicelib.settings import get_settings

PLAN_TTL_SECONDS = 3600
MAX_KEY_LENGTH = 1024
_EXPIRY_ATTEMPTS = 3  # an overwrite publishing meanwhile changes the version: read again


def plan(file_id: str, query: Mapping[str, str] | None,
         headers: Mapping[str, str]) -> dict[str, Any]:
    """Chunks of a byte range, each with replica edges in preferred order and an S3 fallback.

    One paginated Query for the file and one Scan of the (small) nodes table, whatever
    the chunk count: no per-chunk reads.
    """
    check_id(file_id, "file_id")
    settings = get_settings()
    view = aws.chunk_catalog().file_view(file_id)
    meta = view.meta
    if meta is None:
        raise NotFound("no such file", file_id=file_id)
    if meta.status != FILE_READY:
        raise Gone("file was deleted", file_id=file_id)
    first, last = byte_range(query or {}, meta.size)
    live = placement.eligible(aws.node_registry().list_nodes(), time.time(),
                              settings.heartbeat_timeout)
    ranked = placement.choose(file_id, live, len(live),
                              client_location=shares.client_location(headers))
    held: dict[int, set[str]] = {}
    for replica in view.replicas_of(meta.version):
        held.setdefault(replica.index, set()).add(replica.node_id)
    expires = int(time.time()) + PLAN_TTL_SECONDS
    edge_query = urlencode(secret_store.signer(settings.signing_key_secret).sign(
        SharePolicy(file_id=file_id, version=meta.version, expires=expires)))
    s3_url = _presigned_get(meta)
    chunks = []
    for chunk in view.chunks_of(meta.version):
        if not overlaps(chunk.offset, chunk.length, first, last):
            continue
        holders = held.get(chunk.index, set())
        order = [n for n in ranked if n.node_id in holders]
        order += [n for n in ranked if n.node_id not in holders][
            : max(settings.replication_factor - len(order), 0)]
        chunks.append({
            **chunk.to_api(),
            "replicas": [{"node_id": n.node_id, "url": f"{n.endpoint}/f/{file_id}?{edge_query}"}
                         for n in order],
            "s3_url": s3_url,
        })
    metrics.add_metric(name=METRIC_PLAN_SERVED, unit="Count", value=1)
    return {"file_id": file_id, "version": meta.version, "size": meta.size,
            "chunk_size": meta.chunk_size, "content_type": meta.content_type, "etag": meta.etag,
            "edge_query": edge_query, "expires": expires, "chunks": chunks}


def byte_range(query: Mapping[str, str], size: int) -> tuple[int, int]:
    """``(first, last)`` byte of the asked range; the whole file by default."""
    offset = validate.query_integer(query, "offset", default=0) or 0
    length = validate.query_integer(query, "length", low=1)
    if size == 0 and offset == 0:
        return 0, -1
    if offset >= size:
        raise RangeNotSatisfiable("offset is past the end of the file", size=size)
    end = size if length is None else min(offset + length, size)
    return offset, end - 1


def overlaps(offset: int, length: int, first: int, last: int) -> bool:
    """Whether bytes ``offset..offset+length-1`` meet ``first..last`` (inclusive)."""
    return offset <= last and first <= offset + length - 1


def _presigned_get(meta: FileRecord) -> str:
    params = {"Bucket": meta.bucket, "Key": meta.key}
    if meta.version_id:
        params["VersionId"] = meta.version_id
    url: str = aws.client("s3").generate_presigned_url("get_object", Params=params,
                                                        ExpiresIn=PLAN_TTL_SECONDS)
    return url


def delete(file_id: str) -> dict[str, Any]:
    """Tombstone the current version, then start its garbage collection (202)."""
    check_id(file_id, "file_id")
    catalog = aws.chunk_catalog()
    meta = catalog.get_file(file_id)
    if meta is None:
        raise NotFound("no such file", file_id=file_id)
    if meta.status == FILE_READY:
        # Conditional on the version read: an overwrite in between is not tombstoned blind.
        tombstoned = catalog.mark_deleting(file_id, meta.version)
        if tombstoned is None:
            raise Conflict("the file changed while deleting; retry", file_id=file_id)
        meta = tombstoned
        metrics.add_metric(name=METRIC_FILE_DELETED, unit="Count", value=1)
    started = gc.start(file_id, meta.version)
    logger.info("file tombstoned", extra={"file_id": file_id, "version": meta.version,
                                          "gc_started": started is not None})
    return {"file_id": file_id, "version": meta.version, "status": FILE_DELETING}


def set_expiry(file_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Set (``expires_at`` or ``expires_in_seconds``) or clear (``expires_at: null``) the
    expiry of a ready file; prune collects it once the expiry has passed.

    The expiry is the file's, not a version's: a new version keeps it.
    """
    check_id(file_id, "file_id")
    if "expires_at" not in body and "expires_in_seconds" not in body:
        raise InvalidInput("give expires_at (unix seconds, or null to clear it) "
                           "or expires_in_seconds", field="expires_at")
    expires_at = validate.expiry(body, int(time.time()))
    if expires_at is None and "expires_at" not in body:
        raise InvalidInput("expires_in_seconds must be an integer", field="expires_in_seconds")
    catalog = aws.chunk_catalog()
    for _ in range(_EXPIRY_ATTEMPTS):
        meta = catalog.get_file(file_id)
        if meta is None:
            raise NotFound("no such file", file_id=file_id)
        if meta.status != FILE_READY:
            raise Gone("file was deleted", file_id=file_id)
        try:
            updated = catalog.set_expiry(file_id, meta.version, expires_at)
        except Conflict:
            continue  # a new version or a tombstone landed in between: look again
        logger.info("file expiry set", extra={"file_id": file_id, "expires_at": expires_at})
        return updated.to_api()
    raise Conflict("the file kept changing; retry", file_id=file_id)


def import_object(body: dict[str, Any]) -> dict[str, Any]:
    """Register an object already in S3, pinned to its version id or ETag.

    Ids derive from the pinned object, so a retried import (or a second import of the
    same bytes) answers the record the first one wrote instead of duplicating it; an
    expiry given with it is set on that record.
    """
    settings = get_settings()
    now = int(time.time())
    expires_at = validate.expiry(body, now)
    bucket = validate.string(body, "bucket", max_len=63) or ""
    key = validate.string(body, "key", max_len=MAX_KEY_LENGTH, pattern=validate.NO_CONTROL) or ""
    version_id = validate.string(body, "version_id", max_len=1024, optional=True,
                                 pattern=validate.TOKEN_TEXT)
    etag = validate.string(body, "etag", max_len=128, optional=True, pattern=validate.ETAG_TEXT)
    name = validate.string(body, "name", optional=True)
    content_type = validate.string(body, "content_type", max_len=255, optional=True,
                                   pattern=validate.HEADER_TEXT)
    if version_id and etag:
        raise InvalidInput("give version_id or etag, not both", field="version_id")
    if bucket not in settings.import_buckets:
        raise Forbidden("imports from this bucket are not allowed", bucket=bucket)
    head = _head(bucket, key, version_id, etag)
    size = int(head["ContentLength"])
    etag_seen = str(head["ETag"]).strip('"')
    pinned_version = (head.get("VersionId")
                      if head.get("VersionId") not in (None, "null") else None)
    digest = hashlib.blake2b("\x00".join((bucket, key, pinned_version or "", etag_seen))
                             .encode(), digest_size=32).hexdigest()
    file_id, version = digest[:32], digest[32:]
    meta = FileRecord(
        file_id=file_id, version=version, name=name or key, size=size,
        content_type=content_type or str(head.get("ContentType") or "application/octet-stream"),
        etag=etag_seen, last_modified=int(head["LastModified"].timestamp()),
        chunk_size=settings.chunk_size, bucket=bucket, key=key, created_at=now,
        updated_at=now, source=SOURCE_IMPORT,
        version_id=pinned_version, expires_at=expires_at,
    )
    chunks = [ChunkRecord(file_id=file_id, version=version, index=index,
                          offset=chunk_bounds(index, size, meta.chunk_size)[0],
                          length=chunk_bounds(index, size, meta.chunk_size)[1], sha256=None)
              for index in range(chunk_count(size, meta.chunk_size))]
    try:
        aws.chunk_catalog().put_import(meta, chunks)
    except Conflict:
        existing = aws.chunk_catalog().get_file(file_id)
        if existing is not None and existing.version == version:
            if existing.status != FILE_READY:
                raise Gone("this import was deleted", file_id=file_id) from None
            if expires_at is not None and existing.expires_at != expires_at:
                return set_expiry(file_id, {"expires_at": expires_at})
            return existing.to_api()
        raise
    metrics.add_metric(name=METRIC_FILE_IMPORTED, unit="Count", value=1)
    return meta.to_api()


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


def record_chunk_hash(node_id: str, file_id: str, index: str, headers: Mapping[str, str],
                      body: dict[str, Any]) -> dict[str, Any]:
    """An edge's first fetch of an imported chunk fixes its SHA-256 (first writer wins)."""
    check_id(node_id, "node_id")
    check_id(file_id, "file_id")
    auth.require_node(headers, node_id)
    if not index.isdigit() or len(index) > 9:
        raise InvalidInput("index must be a chunk number", field="index")
    version = validate.string(body, "version", max_len=64) or ""
    check_id(version, "version")
    digest = validate.sha256_list({"sha256": [body.get("sha256")]}, "sha256", 1)[0]
    recorded = aws.chunk_catalog().record_chunk_sha256(file_id, version, int(index), digest)
    if recorded:
        metrics.add_metric(name=METRIC_CHUNK_HASH_RECORDED, unit="Count", value=1)
    return {"file_id": file_id, "version": version, "index": int(index), "sha256": digest,
            "recorded": recorded}
