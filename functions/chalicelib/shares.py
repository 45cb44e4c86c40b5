"""Share URLs (docs/PROTOCOL.md, "Share signatures"): mint a file share or a folder share,
and send a file share's holder to an edge chosen by placement, or to the origin when no
edge can take it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fsnode_core.errors import Gone, InvalidInput
from fsnode_core.folder_tokens import mint_folder_token
from fsnode_core.ids import check_id
from fsnode_core.models import FileRecord
from fsnode_core.paths import check_folder, url_path
from fsnode_core.published import SOURCE_UPLOAD
from fsnode_core.signing import SharePolicy, canonical_network
from fsnode_core.version_tickets import VersionTicket, mint_ticket

from chalicelib import edges, file_paths, origin_fallback, public_names, secret_store, validate
from chalicelib.observability import METRIC_SHARE_MINTED, METRIC_SHARE_REDIRECT, metrics
from chalicelib.settings import get_settings

MAX_TTL_SECONDS = 7 * 24 * 3600
# What a file share's redirect forwards to the edge: the signed fields, never anything
# else the caller added (``v`` is set from the file's current version).
_SIGNED_FIELDS = ("exp", "nbf", "ip", "kid", "sig")


def mint(file_id: str, body: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A share URL for the file (whatever its current version), valid ``ttl_seconds``
    (1 s .. 7 days), optionally from ``not_before`` and only for clients in ``ip``.
    A link never outlives its file: ``expires`` is cut to the file's expiry, if sooner."""
    check_id(file_id, "file_id")
    if body.get("prefix") is not None:
        raise InvalidInput("a folder share is POST /shares {prefix}", field="prefix")
    ttl, not_before, ip = _policy_fields(body)
    meta = file_paths.ready_file(file_id)
    now = int(time.time())
    expires = (not_before or now) + ttl
    if meta.expires_at is not None:
        if meta.expires_at <= now:
            raise Gone("file has expired", file_id=file_id)
        expires = min(expires, meta.expires_at)
        if not_before is not None and not_before >= expires:
            raise InvalidInput(
                "not_before is at or after the file's expiry",
                field="not_before",
                file_expires_at=meta.expires_at,
            )
    query = secret_store.signer(get_settings().signing_key_secret).sign(
        SharePolicy(file_id=file_id, expires=expires, not_before=not_before, ip=ip)
    )
    metrics.add_metric(name=METRIC_SHARE_MINTED, unit="Count", value=1)
    return {"share_url": f"{base_url}/s/{file_id}?{urlencode(query)}", "expires": expires}


def mint_folder(body: dict[str, Any], base_url: str) -> dict[str, Any]:
    """``POST /shares``: a folder share for ``prefix`` (a path followed by ``/``, or
    ``""`` for everything). A folder has no single expiry: files past their own answer
    410 however long the share lives."""
    prefix = body.get("prefix")
    check_folder(prefix, "prefix")
    assert isinstance(prefix, str)
    ttl, not_before, ip = _policy_fields(body)
    expires = (not_before or int(time.time())) + ttl
    token = mint_folder_token(
        secret_store.signer(get_settings().signing_key_secret),
        prefix,
        expires,
        not_before=not_before,
        ip=ip,
    )
    metrics.add_metric(name=METRIC_SHARE_MINTED, unit="Count", value=1)
    return {
        "share_url": f"{base_url}/t/{token}/{url_path(prefix) if prefix else ''}",
        "prefix": prefix,
        "expires": expires,
    }


def open_file_share(
    file_id: str, query: list[tuple[str, str]], headers: Mapping[str, str], client_ip: str | None
) -> str:
    """Where a valid file share sends its holder: ``{edge}/f/{file_id}?{signed
    fields}&v={current version}``, or a presigned origin URL when no edge can take it."""
    check_id(file_id, "file_id")
    policy = secret_store.verifier(get_settings().signing_key_secret).verify(
        file_id, query, client_ip=client_ip
    )
    meta = servable(file_id)
    if policy.version is not None and policy.version != meta.version:
        raise Gone("replaced; open the share URL again", file_id=file_id)
    edge = edges.pick(file_id, headers)
    if edge is None:
        return origin_fallback.presigned(meta, policy.expires)
    metrics.add_metric(name=METRIC_SHARE_REDIRECT, unit="Count", value=1)
    fields = dict(query)
    forwarded = {name: fields[name] for name in _SIGNED_FIELDS if name in fields}
    pin = {"v": meta.version, **version_ticket(meta)}
    return f"{public_names.url_of(edge)}/f/{file_id}?{urlencode({**forwarded, **pin})}"


def version_ticket(meta: FileRecord) -> dict[str, str]:
    """The redirect's ``vt``: the version current now, signed with what an edge needs
    to answer before it reads the manifest (``fsnode_core.version_tickets``). Uploads
    only (an edge finds their bytes by id and version; imports' reads are pinned)."""
    if meta.source != SOURCE_UPLOAD:
        return {}
    signer = secret_store.signer(get_settings().signing_key_secret)
    ticket = VersionTicket(
        file_id=meta.file_id,
        version=meta.version,
        issued=int(time.time()),
        size=meta.size,
        chunk_size=meta.chunk_size,
        etag=meta.etag,
        last_modified=meta.last_modified,
        path=meta.path,
        content_type=meta.content_type,
        file_expires=meta.expires_at or 0,
        kid=signer.kid,
    )
    return {"vt": mint_ticket(signer, ticket)}


def servable(file_id: str) -> FileRecord:
    """The file's ready, unexpired ``meta``: NotFound, Gone (deleted, or past its expiry
    even before prune tombstones it)."""
    meta = file_paths.ready_file(file_id)
    if meta.expires_at is not None and meta.expires_at <= time.time():
        raise Gone("file has expired", file_id=file_id)
    return meta


def query_pairs(query: Any) -> list[tuple[str, str]]:
    """Every query parameter with its every value (a repeated one must be refused, so a
    plain dict, which keeps one, will not do): Chalice's MultiDict or a mapping."""
    if not query:
        return []
    if hasattr(query, "getlist"):
        return [(name, value) for name in query for value in query.getlist(name)]
    return list(dict(query).items())


def _policy_fields(body: dict[str, Any]) -> tuple[int, int | None, str | None]:
    ttl = validate.integer(body, "ttl_seconds", low=1, high=MAX_TTL_SECONDS)
    not_before = (
        validate.integer(body, "not_before", low=0, high=2**40)
        if body.get("not_before") is not None
        else None
    )
    cidr = validate.string(body, "ip", max_len=64, optional=True)
    if cidr is None:
        return ttl, not_before, None
    try:
        return ttl, not_before, canonical_network(cidr)
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
