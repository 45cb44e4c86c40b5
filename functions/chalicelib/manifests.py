"""Version manifests and upload declarations in S3 (``fsnode_core.published``): written
by the control plane before a version is published, read back for plans, reports and
the edges' manifest route.

A hashed manifest is immutable (only ``POST /files/{id}/rehash`` replaces one), so a
Lambda process keeps the ones it read for a minute: a 50,000-chunk manifest is a few
megabytes, read once per process rather than once per plan page.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.errors import NotFound, Unavailable
from fsnode_core.models import FileRecord
from fsnode_core.published import Origin, UploadDeclaration, VersionManifest
from fsnode_core.published_keys import version_manifest_key
from fsnode_core.store_errors import error_code

from chalicelib import aws
from chalicelib.settings import get_settings

CACHE_SECONDS = 60.0
CACHE_ENTRIES = 16
_cache: OrderedDict[tuple[str, str], tuple[float, VersionManifest]] = OrderedDict()
_lock = threading.Lock()
_MISSING = ("NoSuchKey", "404", "NotFound")


def manifest_of(meta: FileRecord, chunk_sha256: str | None) -> VersionManifest:
    """The manifest a file version publishes (hashes as known; None for an import not
    hashed yet)."""
    return VersionManifest(
        file_id=meta.file_id,
        version=meta.version,
        path=meta.path,
        size=meta.size,
        chunk_size=meta.chunk_size,
        content_type=meta.content_type,
        etag=meta.etag,
        last_modified=meta.last_modified,
        source=meta.source,
        origin=Origin(bucket=meta.bucket, key=meta.key, version_id=meta.version_id, etag=meta.etag),
        chunk_sha256=chunk_sha256,
        chunks_sha256=meta.chunks_sha256 if chunk_sha256 else None,
    )


def put_manifest(manifest: VersionManifest) -> None:
    """Write a version manifest (before the version is published)."""
    _put(version_manifest_key(manifest.file_id, manifest.version), manifest.to_json())
    forget(manifest.file_id, manifest.version)


def put_declaration(declaration: UploadDeclaration) -> None:
    """Write an upload's declared hashes at its version manifest's key."""
    _put(version_manifest_key(declaration.file_id, declaration.version), declaration.to_json())


def read_declaration(file_id: str, version: str) -> UploadDeclaration:
    """An upload's declaration; NotFound when there is none (or it was completed)."""
    return UploadDeclaration.from_json(_get(version_manifest_key(file_id, version)))


def read_manifest(file_id: str, version: str) -> VersionManifest:
    """A published version's manifest; NotFound when it is missing."""
    key = (file_id, version)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            _cache.move_to_end(key)
            return hit[1]
    manifest = VersionManifest.from_json(_get(version_manifest_key(file_id, version)))
    if manifest.chunk_sha256 is not None:  # an unhashed import changes once: not kept
        with _lock:
            _cache[key] = (now, manifest)
            _cache.move_to_end(key)
            while len(_cache) > CACHE_ENTRIES:
                _cache.popitem(last=False)
    return manifest


def forget(file_id: str, version: str) -> None:
    """Drop a cached manifest (it was just rewritten)."""
    with _lock:
        _cache.pop((file_id, version), None)


def clear() -> None:
    with _lock:
        _cache.clear()


def _put(key: str, body: bytes) -> None:
    try:
        aws.client("s3").put_object(
            Bucket=get_settings().bucket, Key=key, Body=body, ContentType="application/json"
        )
    except (ClientError, BotoCoreError) as exc:
        raise Unavailable("could not write a manifest to the origin bucket") from exc


def _get(key: str) -> bytes:
    try:
        answer = aws.client("s3").get_object(Bucket=get_settings().bucket, Key=key)
        body: bytes = answer["Body"].read()
    except ClientError as exc:
        if error_code(exc) in _MISSING:
            raise NotFound("no manifest for this file version", key=key) from exc
        raise Unavailable("could not read a manifest from the origin bucket") from exc
    except BotoCoreError as exc:
        raise Unavailable("the origin bucket is unreachable") from exc
    return body
