"""The origin when no edge can take a viewer (none live, or all past their load bound):
a short-lived presigned S3 GET of the same version, or, for a folder share's playlist,
the playlist itself (so its relative URLs resolve back under the share's ``/t/``).
Slower than an edge, but the player plays. Metric ``OriginFallback``."""

from __future__ import annotations

import time

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.content_types import is_playlist
from fsnode_core.errors import Gone, Unavailable
from fsnode_core.models import SOURCE_IMPORT, FileRecord
from fsnode_core.store_errors import error_code

from chalicelib import aws
from chalicelib.observability import METRIC_ORIGIN_FALLBACK, logger, metrics
from chalicelib.settings import get_settings

PLAYLIST_INLINE_MAX = 1024 * 1024


def presigned(meta: FileRecord, share_expires: int) -> str:
    """A presigned GET of ``meta``'s version, served with its content type, valid until
    the share expires or ``FSNODE_FALLBACK_URL_SECONDS``, whichever is sooner."""
    _check_pinned(meta)
    ttl = max(1, min(get_settings().fallback_url_seconds, share_expires - int(time.time())))
    params = {"Bucket": meta.bucket, "Key": meta.key, "ResponseContentType": meta.content_type}
    if meta.version_id:
        params["VersionId"] = meta.version_id
    url: str = aws.client("s3").generate_presigned_url("get_object", Params=params, ExpiresIn=ttl)
    _count(meta, "presigned")
    return url


def inline_playlist(meta: FileRecord) -> bytes | None:
    """A small playlist's bytes, for the control plane to answer itself (None: not a
    playlist, or larger than ``PLAYLIST_INLINE_MAX``)."""
    if not is_playlist(meta.path) or meta.size > PLAYLIST_INLINE_MAX:
        return None
    _check_pinned(meta)
    kwargs = {"Bucket": meta.bucket, "Key": meta.key}
    if meta.version_id:
        kwargs["VersionId"] = meta.version_id
    elif meta.source == SOURCE_IMPORT:
        kwargs["IfMatch"] = f'"{meta.etag}"'
    try:
        body: bytes = aws.client("s3").get_object(**kwargs)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "NoSuchVersion", "PreconditionFailed", "412"):
            raise Gone("the file's bytes are gone", file_id=meta.file_id) from exc
        raise Unavailable("the origin could not be read") from exc
    except BotoCoreError as exc:
        raise Unavailable("the origin is unreachable") from exc
    _count(meta, "inline")
    return body


def _check_pinned(meta: FileRecord) -> None:
    # An import in an unversioned bucket can be replaced under its key: only an edge
    # (which checks the ETag on every read) may serve it.
    if meta.source == SOURCE_IMPORT and not meta.version_id:
        raise Unavailable("no edge can take this request now", file_id=meta.file_id)


def _count(meta: FileRecord, how: str) -> None:
    metrics.add_metric(name=METRIC_ORIGIN_FALLBACK, unit="Count", value=1)
    logger.warning(
        "no edge can take the request: the origin serves it",
        extra={"file_id": meta.file_id, "how": how},
    )
