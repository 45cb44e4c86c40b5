"""Download plans: per chunk, which edges hold it (or should), and its SHA-256.

Compact and paged, so a plan of 50,000 chunks stays far below Lambda's 6 MB answer:
the edges are listed once (``nodes``, each with its signed URL) and each chunk names
them by index; the presigned S3 fallback is one URL for the whole object (send
``Range``); a page holds at most ``PLAN_PAGE`` chunks and says where the next starts.
One GetItem, the manifest from S3 (cached per process), one Query of the page's
replicas and one Scan of the nodes table, whatever the chunk count.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fsnode_core.chunks import chunk_bounds
from fsnode_core.errors import RangeNotSatisfiable
from fsnode_core.ids import check_id
from fsnode_core.models import FileRecord
from fsnode_core.signing import SharePolicy

from chalicelib import aws, edges, file_paths, manifests, public_names, secret_store, validate
from chalicelib.observability import METRIC_PLAN_SERVED, metrics
from chalicelib.settings import get_settings

PLAN_TTL_SECONDS = 3600
PLAN_PAGE = 10_000  # chunks per answer: about 1.3 MB of JSON


def plan(file_id: str, query: Mapping[str, str] | None,
         headers: Mapping[str, str]) -> dict[str, Any]:
    """The chunks overlapping ``offset``/``length`` (default: the whole file), at most
    ``limit`` of them; ``next_offset`` continues the range (None: done)."""
    check_id(file_id, "file_id")
    query = query or {}
    settings = get_settings()
    meta = file_paths.ready_file(file_id)
    first_byte, last_byte = byte_range(query, meta.size)
    limit = validate.query_integer(query, "limit", low=1, high=PLAN_PAGE,
                                   default=PLAN_PAGE) or PLAN_PAGE
    manifest = manifests.read_manifest(file_id, meta.version)
    expires = int(time.time()) + PLAN_TTL_SECONDS
    signed = secret_store.signer(settings.signing_key_secret).sign(
        SharePolicy(file_id=file_id, expires=expires))
    edge_query = urlencode({**signed, "v": meta.version})
    ranked = edges.ranked(file_id, headers)
    position = {node.node_id: i for i, node in enumerate(ranked)}
    chunks: list[dict[str, Any]] = []
    next_offset = None
    if meta.size:
        span = chunk_span(first_byte, last_byte, meta.chunk_size)
        first, last = span.start, min(span.stop - 1, span.start + limit - 1)
        held: dict[int, list[int]] = {}
        for replica in aws.chunk_catalog().replicas_in_range(file_id, meta.version, first, last):
            if replica.node_id in position:
                held.setdefault(replica.index, []).append(position[replica.node_id])
        for index in range(first, last + 1):
            offset, length = chunk_bounds(index, meta.size, meta.chunk_size)
            holders = sorted(held.get(index, []))
            chunks.append({"index": index, "offset": offset, "length": length,
                           "sha256": manifest.chunk_hash(index),
                           "replicas": holders + _top_others(holders, len(ranked),
                                                             settings.replication_factor)})
        after = (last + 1) * meta.chunk_size
        next_offset = after if after <= last_byte else None
    metrics.add_metric(name=METRIC_PLAN_SERVED, unit="Count", value=1)
    return {"file_id": file_id, "version": meta.version, "size": meta.size,
            "chunk_size": meta.chunk_size, "content_type": meta.content_type,
            "etag": meta.etag, "edge_query": edge_query, "expires": expires,
            "nodes": [{"node_id": node.node_id,
                       "url": f"{public_names.url_of(node)}/f/{file_id}?{edge_query}"}
                      for node in ranked],
            "s3_url": _presigned_get(meta), "chunks": chunks, "next_offset": next_offset}


def _top_others(holders: list[int], nodes: int, factor: int) -> list[int]:
    """Placement's first choices not holding the chunk, up to the replication factor."""
    out: list[int] = []
    for index in range(nodes):
        if len(holders) + len(out) >= factor:
            break
        if index not in holders:
            out.append(index)
    return out


def chunk_span(first_byte: int, last_byte: int, chunk_size: int) -> range:
    """The chunks that bytes ``first_byte..last_byte`` (inclusive) touch."""
    return range(first_byte // chunk_size, last_byte // chunk_size + 1)


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


def _presigned_get(meta: FileRecord) -> str:
    params = {"Bucket": meta.bucket, "Key": meta.key}
    if meta.version_id:
        params["VersionId"] = meta.version_id
    url: str = aws.client("s3").generate_presigned_url("get_object", Params=params,
                                                        ExpiresIn=PLAN_TTL_SECONDS)
    return url
