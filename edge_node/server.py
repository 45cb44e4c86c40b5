"""The edge's HTTP application: ``GET|HEAD|OPTIONS /f/{file_id}`` (file shares),
``GET|HEAD|OPTIONS /t/{TOKEN}/{path...}`` (folder shares), ``/healthz``, ``/metrics``.
Domain errors become HTTP answers in one place (``error_middleware``).

Bodies are streamed chunk by chunk from cache leases: on plain HTTP a chunk on
disk goes out with kernel sendfile; otherwise blocks of up to 1 MiB (slices of
fill buffers, no copy; or reads from disk) are written whole, since
large writes keep TLS record and syscall overhead down (see NOTES.md). A cold
chunk streams from its fill as bytes arrive from the origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from fsnode_core.chunks import slices_for_range
from fsnode_core.errors import FsnodeError, RangeNotSatisfiable

from edge_node import data_plane_metrics
from edge_node.cache import ChunkCache, ChunkLease, DiskLease
from edge_node.canonical import CLIENT_CLOSED_REQUEST, canonical_middleware
from edge_node.conditional import Validators, not_modified, range_applies, validators
from edge_node.early_reads import EarlyReads
from edge_node.folders import FolderIndex
from edge_node.limits import final_status
from edge_node.manifests import Manifest, ManifestStore
from edge_node.metrics import EdgeMetrics
from edge_node.origin import OriginFetcher
from edge_node.prefetch import PlaylistPrefetch
from edge_node.published_reader import PublishedReader
from edge_node.ranges import MalformedRange, parse_range
from edge_node.response_headers import content_type
from edge_node.sendfile import send_range
from edge_node.share_targets import Target, file_share, folder_share
from edge_node.shares import ShareKeys as ShareKeys  # re-exported: heartbeat imports it here

log = logging.getLogger(__name__)

_CODE_BY_STATUS = {404: "not_found", 405: "invalid_input", 413: "invalid_input"}

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Range, Content-Length, Accept-Ranges, ETag",
}
_CORS_ALLOW_HEADERS = (
    "Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since"
)
_STREAMING = web.RequestKey("fsnode.streaming", bool)


class ReadAhead:
    """Spots sequential reading of a file, the case where fetching ahead pays off.

    A request is sequential when it starts at (or up to a chunk past) where an
    earlier request for the same file version ended: a player asking for the next
    range. A small overlap is allowed; a repeat of the same range is not sequential.
    An open-ended request (the player will read on) is too. Only a few recent ends
    per file are kept.
    """

    OVERLAP = 1024

    def __init__(self, chunks: int = 2, max_files: int = 4096, ends_per_file: int = 8) -> None:
        self.chunks = max(0, chunks)
        self._max_files = max_files
        self._per_file = ends_per_file
        self._ends: OrderedDict[tuple[str, str], list[int]] = OrderedDict()

    def observe(self, manifest: Manifest, first: int, last: int, open_ended: bool) -> bool:
        """Record a request for ``first..last``; True when reading looks sequential."""
        file_key = (manifest.file_id, manifest.version)
        ends = self._ends.pop(file_key, [])
        # Near an earlier end: first - slack <= end <= first + OVERLAP.
        low, high = first - manifest.chunk_size, first + self.OVERLAP
        sequential = open_ended
        for end in ends:
            if low <= end <= high:
                sequential = True
                break
        ends = [*ends[-(self._per_file - 1) :], last + 1]
        self._ends[file_key] = ends
        while len(self._ends) > self._max_files:
            self._ends.popitem(last=False)
        return sequential


@dataclass(slots=True)
class EdgeContext:
    """What the handlers need; built by ``main`` (or a test) and put on the app."""

    cache: ChunkCache
    manifests: ManifestStore
    keys: ShareKeys
    folders: FolderIndex
    metrics: EdgeMetrics = field(default_factory=EdgeMetrics)
    node_id: str | None = None
    # Kernel sendfile on plain-HTTP connections (the FSNODE_EDGE_HTTP_PORT listener).
    sendfile: bool = True
    readahead: ReadAhead = field(default_factory=ReadAhead)
    origin: OriginFetcher | None = None
    # Proxies in front that append the client to X-Forwarded-For (see share_targets.client_address).
    trusted_proxy_hops: int = 0
    # Fills a folder share's first segments as its media playlist is served.
    prefetch: PlaylistPrefetch | None = None
    # Starts a cold request's first data range beside its head and manifest reads.
    early: EarlyReads | None = None
    # Heads, manifests and listings from S3 (for /metrics).
    published: PublishedReader | None = None


EDGE = web.AppKey("edge", EdgeContext)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: FsnodeError) -> web.Response:
    """The one mapping from a domain error to an HTTP answer."""
    status = exc.status
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
        if request.get(_STREAMING) and request.writer.output_size > 0:
            # The status line is gone already: all we can do is cut the
            # connection so the client sees a short body, not wrong bytes.
            # (Until the first body bytes the header block is only buffered, so
            # a failure before them is still answered with its own status.)
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
    # (File answers carry them from the start; this covers every other answer.)
    headers = response.headers
    if "Access-Control-Expose-Headers" in headers:
        return
    for name, value in CORS_HEADERS.items():
        headers.setdefault(name, value)


def build_app(context: EdgeContext, *, admin: bool = True) -> web.Application:
    """The edge's app; ``admin=False`` leaves out ``/healthz`` and ``/metrics``, which
    ``build_admin_app`` then serves on a port of their own (FSNODE_EDGE_ADMIN_PORT)."""
    app = web.Application(middlewares=[canonical_middleware, error_middleware])
    app[EDGE] = context
    app.on_response_prepare.append(_add_cors)
    app.router.add_get("/f/{file_id}", serve_file)  # also answers HEAD
    app.router.add_route("OPTIONS", "/f/{file_id}", preflight)
    # A folder share: the token and the file's path below the folder, any depth.
    for route in ("/t/{token}", "/t/{token}/{path:.*}"):
        app.router.add_get(route, serve_folder)
        app.router.add_route("OPTIONS", route, preflight)
    if admin:
        _add_admin_routes(app)
    return app


def build_admin_app(context: EdgeContext) -> web.Application:
    """``/healthz`` and ``/metrics`` alone: for load balancer checks and scrapers, on a
    port players cannot reach."""
    app = web.Application(middlewares=[error_middleware])
    app[EDGE] = context
    _add_admin_routes(app)
    return app


def _add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)


async def healthz(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    return web.json_response(
        {
            "ok": True,
            "status": "ok",
            "node_id": edge.node_id,
            # The worker that answered (FSNODE_WORKERS processes serve the port).
            "pid": os.getpid(),
            "cache_bytes": edge.cache.used_bytes,
            "cache_free_bytes": edge.cache.free_bytes,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    text = edge.metrics.render(edge.cache, edge.origin) + data_plane_metrics.render(
        edge.published, edge.early, edge.prefetch
    )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


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
    """``GET|HEAD /f/{file_id}``: a file share."""
    return await _counted(request, file_share)


async def serve_folder(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /t/{TOKEN}/{path...}``: a file below a folder share."""
    return await _counted(request, folder_share)


async def _counted(
    request: web.Request, resolve: Callable[[web.Request, EdgeContext], Awaitable[Target]]
) -> web.StreamResponse:
    edge = request.app[EDGE]
    edge.metrics.requests_in_flight += 1
    status = 500
    try:
        target = await resolve(request, edge)
        response = await _respond(request, edge, target)
        status = await final_status(request, response)
        return response
    except FsnodeError as exc:
        status = exc.status
        raise
    except (ConnectionError, asyncio.CancelledError):
        # The client went away (or was dropped by a limit) mid-answer: not our error.
        status = CLIENT_CLOSED_REQUEST
        log.info("client closed the connection mid-response path=%s", request.path)
        raise
    finally:
        edge.metrics.requests_in_flight -= 1
        edge.metrics.responses[status] += 1


async def _respond(request: web.Request, edge: EdgeContext, target: Target) -> web.StreamResponse:
    manifest = target.manifest
    current = validators(
        manifest.file_id, manifest.version, manifest.etag, manifest.size, manifest.last_modified
    )
    headers = {
        **CORS_HEADERS,
        "Accept-Ranges": "bytes",
        "ETag": current.etag,
        "Last-Modified": current.last_modified_text,
        "Cache-Control": target.cache_control,
    }
    if not_modified(request.method, request.headers, current):
        return web.Response(status=304, headers=headers)

    ranges = _requested_ranges(request, manifest, current)
    media_type = content_type(manifest.path, manifest.content_type)
    boundary = ""
    if ranges is None:
        status, plan, length = 200, [(0, manifest.size - 1)] if manifest.size else [], manifest.size
        headers["Content-Type"] = media_type
    elif len(ranges) == 1:
        first, last = ranges[0]
        status, plan, length = 206, ranges, last - first + 1
        headers["Content-Type"] = media_type
        headers["Content-Range"] = f"bytes {first}-{last}/{manifest.size}"
    else:
        # RFC 9110 section 14.6: several ranges travel as multipart/byteranges.
        boundary = secrets.token_hex(16)
        status, plan = 206, ranges
        length = _multipart_length(ranges, manifest, media_type, boundary)
        headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"

    response = _BodyResponse(status=status, headers=headers)
    response.content_length = length
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    open_ended = ranges is None or _open_ended(request.headers.get("Range", ""))
    await _stream(request, response, edge, manifest, plan, (boundary, media_type), open_ended)
    return response


def _open_ended(header: str) -> bool:
    """``bytes=N-``: a player that will read on to the end."""
    spec = header.partition("=")[2].strip()
    return "," not in spec and spec.endswith("-") and spec[:-1].isdigit()


class _BodyResponse(web.StreamResponse):
    """A streamed answer whose header block goes out with the first body bytes: one
    TLS write and one send instead of two per request (aiohttp's ``web.Response``
    does the same). Before a sendfile, ``response.write(b"")`` flushes it."""

    _send_headers_immediately = False


def _requested_ranges(
    request: web.Request, manifest: Manifest, current: Validators
) -> list[tuple[int, int]] | None:
    """The ranges to send, or None for the whole file (200)."""
    header = request.headers.get("Range")
    # Section 14.2: only GET has range semantics; an empty file has no ranges.
    if header is None or request.method != "GET" or manifest.size == 0:
        return None
    if not range_applies(request.headers, current):
        return None
    try:
        return parse_range(header, manifest.size)
    except MalformedRange:
        return None


def _part_header(
    first: int, last: int, manifest: Manifest, media_type: str, boundary: str
) -> bytes:
    return (
        f"--{boundary}\r\nContent-Type: {media_type}\r\n"
        f"Content-Range: bytes {first}-{last}/{manifest.size}\r\n\r\n"
    ).encode()


def _multipart_end(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()


def _multipart_length(
    ranges: list[tuple[int, int]], manifest: Manifest, media_type: str, boundary: str
) -> int:
    total = len(_multipart_end(boundary))
    for first, last in ranges:
        total += len(_part_header(first, last, manifest, media_type, boundary))
        total += (last - first + 1) + 2
    return total


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    edge: EdgeContext,
    manifest: Manifest,
    plan: list[tuple[int, int]],
    multipart: tuple[str, str],
    open_ended: bool,
) -> None:
    boundary, media_type = multipart
    cache = edge.cache
    chunk_size = manifest.chunk_size
    # Plain sockets take the kernel's sendfile (no copies through Python); TLS
    # has no kernel offload here, so it takes large writes.
    transport = request.transport
    plain = edge.sendfile and transport is not None and not transport.get_extra_info("sslcontext")
    last_chunk = len(manifest.chunks) - 1
    readahead_limit = -1
    if plan:
        sequential = edge.readahead.observe(manifest, plan[0][0], plan[-1][1], open_ended)
        last_byte = plan[0][1] if len(plan) == 1 else max(last for _, last in plan)
        request_last = last_byte // chunk_size
        # Ahead of the reader within the request; past its end too when sequential.
        extra = edge.readahead.chunks if sequential else 0
        readahead_limit = min(last_chunk, request_last + extra)
    # Wait for the first byte before the status line, so an origin failure on a
    # cold start is still a proper 502/504 with a JSON body.
    first_lease = None
    if plan:
        start, end = plan[0]
        index = start // chunk_size
        offset = start % chunk_size
        # A hit needs no coroutine; a fill ``acquire`` starts asks for ``offset`` first.
        wants = min(end - start + 1, chunk_size - offset)
        first_lease = cache.hit(manifest, index) or await cache.acquire(
            manifest, index, offset=offset, wants=wants
        )
        try:
            await first_lease.ready(offset, wants)
        except BaseException:
            cache.release(first_lease)
            raise
    try:
        request[_STREAMING] = True
        await response.prepare(request)
        for first, last in plan:
            if boundary:
                await response.write(_part_header(first, last, manifest, media_type, boundary))
            for piece in slices_for_range(first, last, manifest.size, chunk_size):
                for ahead in range(piece.index + 1, piece.index + 1 + edge.readahead.chunks):
                    if ahead > readahead_limit:
                        break
                    cache.prefetch(manifest, ahead)
                if first_lease is not None and first_lease.key[2] == piece.index:
                    lease, first_lease = first_lease, None
                else:
                    lease = cache.hit(manifest, piece.index) or (
                        await cache.acquire(manifest, piece.index, offset=piece.offset_in_chunk)
                    )
                try:
                    # A piece that fits one write and needs no waiting goes out here;
                    # the rest (sendfile, big or streaming pieces) in _send_piece.
                    sendfile = plain and lease.fd is not None
                    block = None if sendfile else lease.now(piece.offset_in_chunk, piece.length)
                    if block is not None:
                        await response.write(block)
                        edge.metrics.bytes_served += piece.length
                    else:
                        await _send_piece(
                            request,
                            response,
                            edge,
                            lease,
                            piece.offset_in_chunk,
                            piece.length,
                            plain,
                        )
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


async def _send_piece(
    request: web.Request,
    response: web.StreamResponse,
    edge: EdgeContext,
    lease: ChunkLease,
    offset: int,
    length: int,
    plain: bool,
) -> None:
    metrics = edge.metrics
    if plain and isinstance(lease, DiskLease) and lease.fd is not None:
        await response.write(b"")  # the header block first: sendfile bypasses aiohttp
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        sent = await send_range(transport, lease.fd, offset, length)
        metrics.bytes_served += sent
        metrics.sendfile_bytes += sent
        offset, length = offset + sent, length - sent
        if not length:
            return
    # aclosing: a client that goes away mid-piece must not leave the generator open.
    async with contextlib.aclosing(lease.blocks(offset, length)) as blocks:
        async for block in blocks:
            await response.write(block)
            metrics.bytes_served += len(block)
