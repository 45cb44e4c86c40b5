"""The edge's HTTP application: ``GET|HEAD|OPTIONS /f/{file_id}``, ``/healthz``,
``/metrics``. Domain errors become HTTP answers in one place (``error_middleware``).

Bodies are streamed chunk by chunk from pinned cache leases in large blocks (large
writes keep TLS record and syscall overhead down, see NOTES.md), never holding a
whole file in memory.
"""

from __future__ import annotations

import asyncio
import calendar
import email.utils
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from fsnode_core.chunks import slices_for_range
from fsnode_core.errors import FsnodeError, RangeNotSatisfiable
from fsnode_core.ids import check_id
from fsnode_core.signing import SharePolicy, ShareVerifier

from edge_node.cache import ChunkCache, ChunkLease
from edge_node.manifests import Manifest, ManifestStore
from edge_node.metrics import EdgeMetrics
from edge_node.ranges import MalformedRange, parse_range

log = logging.getLogger(__name__)

# Read and write this much at a time: big enough that TLS and syscall overhead
# stay small, small enough that one slow client does not hold much memory.
WRITE_BLOCK = 1024 * 1024
# A signed URL is never cached longer than this, even if it lives longer.
MAX_CACHE_SECONDS = 7 * 24 * 3600

STATUS_BY_CODE: dict[str, int] = {
    "invalid_input": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "gone": 410,
    "range_not_satisfiable": 416,
    "origin_error": 502,
    "integrity_error": 502,
    "unavailable": 503,
    "origin_timeout": 504,
}
_CODE_BY_STATUS = {404: "not_found", 405: "invalid_input", 413: "invalid_input"}

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Range, Content-Length, Accept-Ranges, ETag",
}
_CORS_ALLOW_HEADERS = "Range, If-Range, If-None-Match, If-Modified-Since"
_STREAMING = web.RequestKey("fsnode.streaming", bool)


class ShareKeys:
    """The share-signature public keys; replaced whole when heartbeats bring new ones."""

    def __init__(self, pems: Mapping[str, str] | None = None) -> None:
        self._pems: dict[str, str] = {}
        self._verifier = ShareVerifier({})
        if pems:
            self.update(pems)

    def update(self, pems: Mapping[str, str]) -> None:
        if dict(pems) != self._pems:
            self._verifier = ShareVerifier.from_pems(pems)
            self._pems = dict(pems)

    def verify(self, file_id: str, query: Mapping[str, str]) -> SharePolicy:
        return self._verifier.verify(file_id, query)


@dataclass(slots=True)
class EdgeContext:
    """What the handlers need; built by ``main`` (or a test) and put on the app."""

    cache: ChunkCache
    manifests: ManifestStore
    keys: ShareKeys
    metrics: EdgeMetrics = field(default_factory=EdgeMetrics)
    node_id: str | None = None
    # Kernel sendfile on plain-HTTP connections (the FSNODE_EDGE_HTTP_PORT listener).
    sendfile: bool = True


EDGE = web.AppKey("edge", EdgeContext)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: FsnodeError) -> web.Response:
    """The one mapping from a domain error to an HTTP answer."""
    status = STATUS_BY_CODE.get(exc.code, 500)
    # no-store: an error for one signed URL must not be replayed from a cache.
    response = web.json_response(
        {"error": exc.to_dict()}, status=status, headers={"Cache-Control": "no-store"}
    )
    if isinstance(exc, RangeNotSatisfiable):
        # RFC 9110 section 15.5.17: a 416 names the current length.
        response.headers["Content-Range"] = f"bytes */{exc.size}"
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FsnodeError as exc:
        if request.get(_STREAMING):
            # The status line is gone already: all we can do is cut the
            # connection so the client sees a short body, not wrong bytes.
            log.error("failed mid-response path=%s error=%s", request.path, exc.message)
            raise
        if exc.code in ("origin_error", "origin_timeout", "integrity_error", "unavailable"):
            log.warning("request failed path=%s code=%s %s", request.path, exc.code, exc.message)
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODE_BY_STATUS.get(exc.status, "invalid_input")
        body = {"error": {"code": code, "message": exc.reason}}
        return web.json_response(body, status=exc.status, headers=_allow_header(exc))


def _allow_header(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


async def _add_cors(_request: web.Request, response: web.StreamResponse) -> None:
    # Share URLs are bearer URLs (no cookies), so any origin may read them.
    for name, value in CORS_HEADERS.items():
        response.headers.setdefault(name, value)


def build_app(context: EdgeContext) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    app[EDGE] = context
    app.on_response_prepare.append(_add_cors)
    app.router.add_get("/f/{file_id}", serve_file)  # also answers HEAD
    app.router.add_route("OPTIONS", "/f/{file_id}", preflight)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def healthz(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    return web.json_response(
        {
            "ok": True,
            "status": "ok",
            "node_id": edge.node_id,
            "cache_bytes": edge.cache.used_bytes,
            "cache_free_bytes": edge.cache.free_bytes,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    return web.Response(
        text=edge.metrics.render(edge.cache), content_type="text/plain", charset="utf-8"
    )


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight (Fetch standard): allow GET/HEAD with the Range headers."""
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
            "Access-Control-Allow-Headers": _CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": "86400",
        },
    )


async def serve_file(request: web.Request) -> web.StreamResponse:
    edge = request.app[EDGE]
    edge.metrics.requests_in_flight += 1
    status = 500
    try:
        response = await _serve_file(request, edge)
        status = response.status
        return response
    except FsnodeError as exc:
        status = STATUS_BY_CODE.get(exc.code, 500)
        raise
    finally:
        edge.metrics.requests_in_flight -= 1
        edge.metrics.responses[status] += 1


async def _serve_file(request: web.Request, edge: EdgeContext) -> web.StreamResponse:
    file_id = check_id(request.match_info["file_id"], "file_id")
    policy = edge.keys.verify(file_id, request.query)
    manifest = await edge.manifests.get(file_id, policy.version)
    etag = strong_etag(manifest)
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Last-Modified": email.utils.formatdate(manifest.last_modified, usegmt=True),
        "Cache-Control": _cache_control(policy.expires),
    }

    if _not_modified(request, etag, manifest.last_modified):
        return web.Response(status=304, headers=headers)

    ranges = _requested_ranges(request, manifest, etag)
    boundary = ""
    if ranges is None:
        status, plan, length = 200, [(0, manifest.size - 1)] if manifest.size else [], manifest.size
        headers["Content-Type"] = manifest.content_type
    elif len(ranges) == 1:
        first, last = ranges[0]
        status, plan, length = 206, ranges, last - first + 1
        headers["Content-Type"] = manifest.content_type
        headers["Content-Range"] = f"bytes {first}-{last}/{manifest.size}"
    else:
        # RFC 9110 section 14.6: several ranges travel as multipart/byteranges.
        boundary = secrets.token_hex(16)
        status, plan = 206, ranges
        length = _multipart_length(ranges, manifest, boundary)
        headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"

    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    await _stream(request, response, edge, manifest, plan, boundary)
    return response


async def _sendfile(request: web.Request, lease: ChunkLease, offset: int, count: int) -> bool:
    """Send ``count`` bytes of a leased chunk with ``loop.sendfile``; False if unsupported."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client went away")
    # A duplicate descriptor: the lease keeps its own, and sendfile moves the offset.
    with os.fdopen(os.dup(lease.fd), "rb", buffering=0) as handle:
        try:
            await asyncio.get_running_loop().sendfile(transport, handle, offset, count)
        except NotImplementedError:
            return False
    return True


def strong_etag(manifest: Manifest) -> str:
    """The same strong validator on every edge: derived from file, version and origin ETag."""
    seed = f"{manifest.file_id}\n{manifest.version}\n{manifest.etag}\n{manifest.size}"
    return '"' + hashlib.sha256(seed.encode()).hexdigest()[:32] + '"'


def _cache_control(expires: int) -> str:
    # The URL stops working at ``expires``; no cache may keep it longer, and only
    # the client's own cache (private) since the URL is a bearer credential.
    remaining = max(0, min(MAX_CACHE_SECONDS, expires - int(time.time())))
    return f"private, max-age={remaining}"


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _not_modified(request: web.Request, etag: str, last_modified: int) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match first, If-Modified-Since only without it."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        # Section 13.1.2: weak comparison.
        wanted = {tag.removeprefix("W/") for tag in _tags(inm)}
        return "*" in wanted or etag in wanted
    ims = request.headers.get("If-Modified-Since")
    if ims is not None:
        since = _http_date(ims)
        return since is not None and last_modified <= since
    return False


def _requested_ranges(
    request: web.Request, manifest: Manifest, etag: str
) -> list[tuple[int, int]] | None:
    """The ranges to send, or None for the whole file (200)."""
    header = request.headers.get("Range")
    # Section 14.2: only GET has range semantics; an empty file has no ranges.
    if header is None or request.method != "GET" or manifest.size == 0:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and not _if_range_holds(if_range.strip(), etag, manifest.last_modified):
        return None
    try:
        return parse_range(header, manifest.size)
    except MalformedRange:
        return None


def _if_range_holds(value: str, etag: str, last_modified: int) -> bool:
    """Section 13.1.5: a strong ETag match, or a date equal to Last-Modified."""
    if value.startswith(('"', "W/")):
        return value == etag
    date = _http_date(value)
    return date is not None and date == last_modified


def _http_date(value: str) -> int | None:
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    offset = parsed[9] or 0
    return calendar.timegm((*parsed[:6], 0, 0, 0)) - offset


def _part_header(first: int, last: int, manifest: Manifest, boundary: str) -> bytes:
    return (
        f"--{boundary}\r\nContent-Type: {manifest.content_type}\r\n"
        f"Content-Range: bytes {first}-{last}/{manifest.size}\r\n\r\n"
    ).encode()


def _multipart_end(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()


def _multipart_length(ranges: list[tuple[int, int]], manifest: Manifest, boundary: str) -> int:
    total = len(_multipart_end(boundary))
    for first, last in ranges:
        total += len(_part_header(first, last, manifest, boundary)) + (last - first + 1) + 2
    return total


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    edge: EdgeContext,
    manifest: Manifest,
    plan: list[tuple[int, int]],
    boundary: str,
) -> None:
    cache = edge.cache
    metrics = edge.metrics
    # Fill the first chunk before sending the status line, so an origin failure
    # on a cold start is still a proper 502/504 with a JSON body.
    first_lease = None
    if plan:
        first_index = plan[0][0] // manifest.chunk_size
        first_lease = await cache.acquire(manifest, first_index)
    # Plain sockets take the kernel's sendfile (no copies through Python); TLS
    # has no kernel offload here, so it gets large buffered writes instead.
    transport = request.transport
    plain = edge.sendfile and transport is not None and not transport.get_extra_info("sslcontext")
    try:
        request[_STREAMING] = True
        await response.prepare(request)
        for first, last in plan:
            if boundary:
                await response.write(_part_header(first, last, manifest, boundary))
            slices = slices_for_range(first, last, manifest.size, manifest.chunk_size)
            for piece in slices:
                # Read-ahead: start the next chunk's fill while this one is sent
                # (players read on sequentially, often with open-ended ranges).
                cache.prefetch(manifest, piece.index + 1)
                if first_lease is not None and first_lease.entry.key[2] == piece.index:
                    lease, first_lease = first_lease, None
                else:
                    lease = await cache.acquire(manifest, piece.index)
                try:
                    start, length = piece.offset_in_chunk, piece.length
                    if plain and await _sendfile(request, lease, start, length):
                        metrics.bytes_served += length
                        continue
                    sent = 0
                    while sent < piece.length:
                        size = min(WRITE_BLOCK, piece.length - sent)
                        block = await lease.read(piece.offset_in_chunk + sent, size)
                        await response.write(block)
                        sent += size
                        metrics.bytes_served += size
                finally:
                    cache.release(lease)
            if boundary:
                await response.write(b"\r\n")
        if boundary:
            await response.write(_multipart_end(boundary))
        await response.write_eof()
    finally:
        if first_lease is not None:
            cache.release(first_lease)
