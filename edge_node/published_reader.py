"""Reads of the objects the control plane publishes under ``meta/v1/`` (docs/PROTOCOL.md,
"Published S3 objects"): heads, version manifests and tree-key listings. They go over
the origin fetcher's presigned S3 requests, on the event loop; parsing is
``fsnode_core.published``'s (the wire format is defined once).

A missing object answers None. S3 answers 403, not 404, for a key that does not exist
when the reader may not list the bucket (an edge may list only ``meta/v1/tree/``), so
both mean "not there" for a head or a manifest.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ElementTree
from typing import Protocol
from urllib.parse import unquote_plus

from fsnode_core.errors import OriginError
from fsnode_core.published import Head, VersionManifest
from fsnode_core.published_keys import head_key, version_manifest_key

log = logging.getLogger(__name__)

# A head is a few hundred bytes; a manifest carries 64 hex characters per chunk (a
# 250 GiB file at 4 MiB chunks: about 4 MB). Anything larger is not ours.
HEAD_BYTES = 64 * 1024
MANIFEST_BYTES = 16 * 1024 * 1024
LIST_PAGE_BYTES = 4 * 1024 * 1024
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_ABSENT = frozenset({403, 404})


class S3Requests(Protocol):
    """Small presigned S3 requests (``edge_node.origin.OriginFetcher.fetch``)."""

    async def fetch(
        self, operation: str, params: dict[str, str], *, max_bytes: int
    ) -> tuple[int, bytes]: ...


class PublishedReader:
    """Heads, manifests and tree listings of the origin bucket (set once registered)."""

    def __init__(self, s3: S3Requests, bucket: str = "") -> None:
        self._s3 = s3
        self.bucket = bucket
        # Counters for tests and /metrics: S3 requests by kind.
        self.head_reads = 0
        self.manifest_reads = 0
        self.list_pages = 0

    async def head(self, file_id: str) -> Head | None:
        """The file's head, or None when it has none (never published, or collected)."""
        self.head_reads += 1
        body = await self._get(head_key(file_id), HEAD_BYTES)
        if body is None:
            return None
        head = Head.from_json(body)
        if head.file_id != file_id:
            raise OriginError("a published head names another file", file_id=file_id)
        return head

    async def manifest(self, file_id: str, version: str) -> VersionManifest | None:
        """The version's manifest, or None when there is none (collected, or never
        written). A declaration (an upload not published) is an OriginError."""
        self.manifest_reads += 1
        body = await self._get(version_manifest_key(file_id, version), MANIFEST_BYTES)
        if body is None:
            return None
        manifest = VersionManifest.from_json(body)
        if (manifest.file_id, manifest.version) != (file_id, version):
            raise OriginError("a version manifest names another version", file_id=file_id)
        return manifest

    async def list_keys(self, prefix: str, max_keys: int) -> tuple[list[str], bool]:
        """Keys under ``prefix`` (ListObjectsV2, paged), at most about ``max_keys``:
        ``(keys, complete)``; ``complete`` is False when more were left."""
        keys: list[str] = []
        token: str | None = None
        while True:
            params = {"Bucket": self._bucket(), "Prefix": prefix}
            if token:
                params["ContinuationToken"] = token
            self.list_pages += 1
            status, body = await self._s3.fetch(
                "list_objects_v2", params, max_bytes=LIST_PAGE_BYTES
            )
            if status != 200:
                raise OriginError("the origin refused a listing", status=status)
            page, token = _parse_list_page(body)
            keys.extend(page)
            if token is None:
                return keys, True
            if len(keys) >= max_keys:
                return keys, False

    async def _get(self, key: str, max_bytes: int) -> bytes | None:
        status, body = await self._s3.fetch(
            "get_object", {"Bucket": self._bucket(), "Key": key}, max_bytes=max_bytes
        )
        if status in _ABSENT:
            return None
        if status != 200:
            raise OriginError("the origin refused a published object", status=status, key=key)
        return body

    def _bucket(self) -> str:
        if not self.bucket:
            raise OriginError("the origin bucket is not known yet (not registered)")
        return self.bucket


def _parse_list_page(body: bytes) -> tuple[list[str], str | None]:
    """A ListObjectsV2 answer's keys and its continuation token (None: the last page)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise OriginError("the origin sent a malformed listing") from exc
    keys = [node.text or "" for node in root.iter(f"{_S3_NS}Key")]
    if (root.findtext(f"{_S3_NS}EncodingType") or "").strip() == "url":
        # Presigned listings ask for EncodingType=url (boto3 adds it, as it does to
        # every ListObjectsV2): keys come percent-encoded, spaces as "+".
        keys = [unquote_plus(key) for key in keys]
    truncated = (root.findtext(f"{_S3_NS}IsTruncated") or "").strip() == "true"
    token = root.findtext(f"{_S3_NS}NextContinuationToken") if truncated else None
    if truncated and not token:
        raise OriginError("the origin sent a truncated listing without a continuation token")
    return keys, token
