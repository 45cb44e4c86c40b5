"""Folder shares at the control plane: ``GET|HEAD /t/{TOKEN}/{path...}``.

The token and the path are checked (``fsnode_core.folder_tokens``); then a file below
the folder is redirected to ``{edge}/t/{TOKEN}/{path}``, the same path form, so a
player resolves the playlist's relative URLs under it. The edge is chosen by placement
on the folder (``pfx:`` + prefix): every request of a stream goes to one edge. No
DynamoDB read on that path: the edge resolves the file from S3. The folder itself
answers its listing (JSON, paged), which ``fsnode get SHARE_URL/`` downloads. With no
edge to take the request, playlists are answered here and other files redirected to a
presigned origin URL (``origin_fallback``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from fsnode_core.digests import entity_tag
from fsnode_core.errors import Forbidden, Gone, NotFound
from fsnode_core.folder_tokens import FolderPolicy, open_folder_share
from fsnode_core.models import FILE_READY, FileRecord
from fsnode_core.paths import url_path

from chalicelib import aws, edges, origin_fallback, public_names, secret_store, validate
from chalicelib.observability import METRIC_SHARE_REDIRECT, metrics
from chalicelib.settings import get_settings

LISTING_PAGE = 1000
PLAYLIST_CACHE = "private, max-age=2"

Answer = tuple[int, dict[str, str], Any]


def open_folder(
    token: str,
    raw_path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    client_ip: str | None,
) -> Answer:
    """``(status, headers, body)`` for a request under a folder share."""
    verifier = secret_store.verifier(get_settings().signing_key_secret)
    policy, relative = open_folder_share(verifier, token, raw_path, client_ip=client_ip)
    if relative == "":
        return (
            200,
            {"Content-Type": "application/json", "Cache-Control": "private, no-store"},
            listing(policy, query),
        )
    path = policy.prefix + relative
    edge = edges.pick(f"pfx:{policy.prefix}", headers)
    if edge is not None:
        metrics.add_metric(name=METRIC_SHARE_REDIRECT, unit="Count", value=1)
        return (
            307,
            {
                "Location": f"{public_names.url_of(edge)}/t/{token}/{url_path(path)}",
                "Cache-Control": "private, no-store",
            },
            "",
        )
    meta = file_at(path)
    playlist = origin_fallback.inline_playlist(meta)
    if playlist is not None:
        try:
            return (
                200,
                {
                    "Content-Type": meta.content_type,
                    "Cache-Control": PLAYLIST_CACHE,
                    "ETag": entity_tag(meta.file_id, meta.version, meta.etag, meta.size),
                },
                playlist.decode("utf-8"),
            )
        except UnicodeDecodeError:
            pass  # not a text playlist after all: the origin serves it as it is
    return (
        307,
        {
            "Location": origin_fallback.presigned(meta, policy.expires),
            "Cache-Control": "private, no-store",
        },
        "",
    )


def raw_path_after(context_path: str, token: str) -> str:
    """The still-encoded path after ``/t/{token}/`` in the request's raw path (API
    Gateway's ``requestContext.path``, which may start with a stage or base path)."""
    marker = f"/t/{token}"
    at = context_path.find(marker + "/")
    if at < 0:
        if not context_path.endswith(marker):
            raise Forbidden("share token is malformed")
        return ""
    return context_path[at + len(marker) + 1 :]


def listing(policy: FolderPolicy, query: Mapping[str, str]) -> dict[str, Any]:
    """A page of the live files under the folder, in path order, relative paths."""
    limit = (
        validate.query_integer(query, "limit", low=1, high=LISTING_PAGE, default=LISTING_PAGE)
        or LISTING_PAGE
    )
    files, token = aws.chunk_catalog().list_files(policy.prefix, limit, query.get("next_token"))
    now = time.time()
    return {
        "prefix": policy.prefix,
        "next_token": token,
        "files": [
            {
                "path": meta.path[len(policy.prefix) :],
                "size": meta.size,
                "content_type": meta.content_type,
                "etag": entity_tag(meta.file_id, meta.version, meta.etag, meta.size),
            }
            for meta in files
            if meta.expires_at is None or meta.expires_at > now
        ],
    }


def file_at(path: str) -> FileRecord:
    """The live file at ``path``: NotFound, or Gone once past its expiry."""
    catalog = aws.chunk_catalog()
    claim = catalog.get_claim(path)
    meta = catalog.get_file(claim.file_id) if claim is not None else None
    if meta is None or meta.status != FILE_READY or meta.path != path:
        raise NotFound("no file at this path")
    if meta.expires_at is not None and meta.expires_at <= time.time():
        raise Gone("file has expired", file_id=meta.file_id)
    return meta
