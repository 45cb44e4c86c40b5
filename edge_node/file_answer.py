"""A file version's answer to ``GET`` or ``HEAD``: its validators (a 304 when the
client's copy is current, ``edge_node.conditional``), the ranges to send (RFC 9110
section 14) and the header block; the body is ``edge_node.body_stream``'s."""

from __future__ import annotations

import secrets

from aiohttp import web

from edge_node.body_stream import BodyResponse, multipart_length, stream_body
from edge_node.conditional import Validators, not_modified, range_applies, validators
from edge_node.context import EdgeContext
from edge_node.manifest import Manifest
from edge_node.ranges import MalformedRange, parse_range
from edge_node.response_headers import CORS_HEADERS, content_type
from edge_node.share_targets import Target


async def respond(request: web.Request, edge: EdgeContext, target: Target) -> web.StreamResponse:
    """The answer to a verified share request for ``target``: 304, 200 or 206."""
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
        length = multipart_length(ranges, manifest, media_type, boundary)
        headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"

    response = BodyResponse(status=status, headers=headers)
    response.content_length = length
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    open_ended = ranges is None or _open_ended(request.headers.get("Range", ""))
    await stream_body(request, response, edge, manifest, plan, (boundary, media_type), open_ended)
    return response


def _open_ended(header: str) -> bool:
    """``bytes=N-``: a player that will read on to the end."""
    spec = header.partition("=")[2].strip()
    return "," not in spec and spec.endswith("-") and spec[:-1].isdigit()


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
