"""Share URLs: mint a signed link, and redirect its holder to an edge chosen by placement."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fsnode_core import placement
from fsnode_core.errors import Forbidden, Gone, InvalidInput, NotFound, Unavailable
from fsnode_core.ids import check_id
from fsnode_core.models import FILE_READY
from fsnode_core.signing import SharePolicy, canonical_network

from chalicelib import aws, secret_store, validate
from chalicelib.observability import METRIC_SHARE_MINTED, METRIC_SHARE_REDIRECT, metrics
from chalicelib.settings import get_settings

MAX_TTL_SECONDS = 7 * 24 * 3600
_SHARE_FIELDS = ("v", "pfx", "exp", "nbf", "ip", "kid", "sig")


def mint(file_id: str, body: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A share URL for the file's current version, valid ``ttl_seconds`` (1 s .. 7 days).

    Optional: ``not_before`` (unix seconds), ``ip`` (a client CIDR), ``prefix`` (the share
    then covers every file whose name starts with it; it must cover this file too).
    A link never outlives its file: ``expires`` is cut to the file's expiry, if sooner.
    """
    check_id(file_id, "file_id")
    ttl = validate.integer(body, "ttl_seconds", low=1, high=MAX_TTL_SECONDS)
    not_before = (validate.integer(body, "not_before", low=0, high=2**40)
                  if body.get("not_before") is not None else None)
    ip = _network(body)
    prefix = validate.string(body, "prefix", max_len=512, optional=True)
    if prefix is not None and not prefix.isprintable():
        raise InvalidInput("prefix must be printable text", field="prefix")
    meta = aws.chunk_catalog().get_file(file_id)
    if meta is None:
        raise NotFound("no such file", file_id=file_id)
    if meta.status != FILE_READY:
        raise Gone("file was deleted", file_id=file_id)
    if prefix is not None and not meta.name.startswith(prefix):
        raise InvalidInput("prefix must be a prefix of this file's name", field="prefix")
    now = int(time.time())
    expires = (not_before or now) + ttl
    if meta.expires_at is not None:
        if meta.expires_at <= now:
            raise Gone("file has expired", file_id=file_id)
        expires = min(expires, meta.expires_at)
        if not_before is not None and not_before >= expires:
            raise InvalidInput("not_before is at or after the file's expiry",
                               field="not_before", file_expires_at=meta.expires_at)
    query = secret_store.signer(get_settings().signing_key_secret).sign(SharePolicy(
        file_id=file_id, version="" if prefix is not None else meta.version, expires=expires,
        not_before=not_before, ip=ip, prefix=prefix))
    metrics.add_metric(name=METRIC_SHARE_MINTED, unit="Count", value=1)
    return {"share_url": f"{base_url}/s/{file_id}?{urlencode(query)}", "expires": expires}


def redirect_target(file_id: str, query: Mapping[str, str],
                    headers: Mapping[str, str] | None = None,
                    client_ip: str | None = None) -> str:
    """The edge URL (same signed query) a valid share redirects to."""
    check_id(file_id, "file_id")
    settings = get_settings()
    policy = secret_store.verifier(settings.signing_key_secret).verify(
        file_id, query, client_ip=client_ip, allow_prefix=True)
    meta = aws.chunk_catalog().get_file(file_id)
    if meta is None:
        raise NotFound("no such file", file_id=file_id)
    if not policy.covers(meta.name):
        raise Forbidden("share URL does not cover this file")
    if meta.status != FILE_READY or (policy.prefix is None and meta.version != policy.version):
        raise Gone("this version of the file is no longer available", file_id=file_id)
    if meta.expires_at is not None and meta.expires_at <= time.time():
        raise Gone("file has expired", file_id=file_id)  # prune collects it soon
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


def _network(body: dict[str, Any]) -> str | None:
    cidr = validate.string(body, "ip", max_len=64, optional=True)
    if cidr is None:
        return None
    try:
        return canonical_network(cidr)
    except ValueError as exc:
        raise InvalidInput("ip must be an address range in CIDR form", field="ip") from exc


def source_ip(context: Mapping[str, Any]) -> str | None:
    """The caller's address as API Gateway saw it (never a spoofable header)."""
    identity = context.get("identity") or {}
    value = identity.get("sourceIp") if isinstance(identity, Mapping) else None
    return str(value) if value else None


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
