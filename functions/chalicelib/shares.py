"""Share URLs: mint a signed link, and redirect its holder to an edge chosen by placement."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fsnode_core import placement
from fsnode_core.errors import Gone, InvalidInput, NotFound, Unavailable
from fsnode_core.ids import check_id
from fsnode_core.models import FILE_READY
from fsnode_core.signing import SharePolicy

from chalicelib import aws, secret_store, validate
from chalicelib.observability import METRIC_SHARE_MINTED, METRIC_SHARE_REDIRECT, metrics
from chalicelib.settings import get_settings

MAX_TTL_SECONDS = 7 * 24 * 3600
_SHARE_FIELDS = ("v", "exp", "nbf", "kid", "sig")


def mint(file_id: str, body: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A share URL for the file's current version, valid ``ttl_seconds`` (1 s .. 7 days)."""
    check_id(file_id, "file_id")
    ttl = validate.integer(body, "ttl_seconds", low=1, high=MAX_TTL_SECONDS)
    meta = aws.chunk_catalog().get_file(file_id)
    if meta is None:
        raise NotFound("no such file", file_id=file_id)
    if meta.status != FILE_READY:
        raise Gone("file was deleted", file_id=file_id)
    expires = int(time.time()) + ttl
    query = secret_store.signer(get_settings().signing_key_secret).sign(
        SharePolicy(file_id=file_id, version=meta.version, expires=expires)
    )
    metrics.add_metric(name=METRIC_SHARE_MINTED, unit="Count", value=1)
    return {"share_url": f"{base_url}/s/{file_id}?{urlencode(query)}", "expires": expires}


def redirect_target(file_id: str, query: Mapping[str, str],
                    headers: Mapping[str, str] | None = None) -> str:
    """The edge URL (same signed query) a valid share redirects to."""
    check_id(file_id, "file_id")
    settings = get_settings()
    policy = secret_store.verifier(settings.signing_key_secret).verify(file_id, query)
    meta = aws.chunk_catalog().get_file(file_id)
    if meta is None:
        raise NotFound("no such file", file_id=file_id)
    if meta.status != FILE_READY or meta.version != policy.version:
        raise Gone("this version of the file is no longer available", file_id=file_id)
    live = placement.eligible(aws.node_registry().list_nodes(), time.time(),
                              settings.heartbeat_timeout)
    chosen = placement.choose(file_id, live, max(settings.replication_factor, 1),
                              client_location=client_location(headers or {}))
    if not chosen:
        raise Unavailable("no edge node is available")
    metrics.add_metric(name=METRIC_SHARE_REDIRECT, unit="Count", value=1)
    # Forward only the share's own fields: nothing else from the caller reaches the edge.
    forwarded = {name: query[name] for name in _SHARE_FIELDS if name in query}
    return f"{chosen[0].endpoint}/f/{file_id}?{urlencode(forwarded)}"


def base_url(headers: Mapping[str, str], context: Mapping[str, Any]) -> str:
    """FSNODE_PUBLIC_URL, else the URL this request came in on."""
    configured = get_settings().public_url
    if configured:
        return configured
    host = headers.get("host")
    if not host or any(c in host for c in "/\\@ ") or len(host) > 255:
        raise InvalidInput("cannot tell the public URL: set FSNODE_PUBLIC_URL")
    proto = headers.get("x-forwarded-proto", "https" if ".amazonaws.com" in host else "http")
    stage = context.get("stage") if host.endswith(".amazonaws.com") else None
    return f"{proto}://{host}" + (f"/{stage}" if stage else "")


def client_location(headers: Mapping[str, str]) -> tuple[float, float] | None:
    """The viewer's ``(lat, lng)`` from CloudFront's viewer headers, when present and sane."""
    try:
        lat = float(headers.get("cloudfront-viewer-latitude", ""))
        lng = float(headers.get("cloudfront-viewer-longitude", ""))
    except ValueError:
        return None
    if -90 <= lat <= 90 and -180 <= lng <= 180:
        return (lat, lng)
    return None
