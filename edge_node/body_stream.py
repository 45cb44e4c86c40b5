"""A file answer's body, streamed chunk by chunk from cache leases.

On plain HTTP a chunk on disk goes out with kernel sendfile; otherwise blocks (slices
of fill buffers, no copy; or reads from disk) are written whole: up to ``cache.BLOCK``
(256 KiB) on plain HTTP, since large writes keep syscall overhead down (see NOTES.md),
and ``listener.TLS_BLOCK`` (16 KiB) on TLS, each drained before the next is read, so a
client that stops reading holds little more than its socket buffers (``body_writer``).
A cold chunk streams from its fill as bytes arrive from the origin. Several ranges travel
as ``multipart/byteranges`` (RFC 9110 section 14.6).
"""

from __future__ import annotations

import contextlib

from aiohttp import web
from fsnode_core.chunks import slices_for_range

from edge_node.body_writer import BlockWriter
from edge_node.cache import ChunkLease, DiskLease
from edge_node.context import EdgeContext
from edge_node.manifest import Manifest
from edge_node.sendfile import send_range

# Set once the header block may be on its way: an error after that cannot be answered.
STREAMING = web.RequestKey("fsnode.streaming", bool)


class BodyResponse(web.StreamResponse):
    """A streamed answer whose header block goes out with the first body bytes: one
    TLS write and one send instead of two per request (aiohttp's ``web.Response``
    does the same). Before a sendfile, ``response.write(b"")`` flushes it."""

    _send_headers_immediately = False


def _part_header(
    first: int, last: int, manifest: Manifest, media_type: str, boundary: str
) -> bytes:
    return (
        f"--{boundary}\r\nContent-Type: {media_type}\r\n"
        f"Content-Range: bytes {first}-{last}/{manifest.size}\r\n\r\n"
    ).encode()


def _multipart_end(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()


def multipart_length(
    ranges: list[tuple[int, int]], manifest: Manifest, media_type: str, boundary: str
) -> int:
    """The ``Content-Length`` of a ``multipart/byteranges`` body of ``ranges``."""
    total = len(_multipart_end(boundary))
    for first, last in ranges:
        total += len(_part_header(first, last, manifest, media_type, boundary))
        total += (last - first + 1) + 2
    return total


async def stream_body(
    request: web.Request,
    response: web.StreamResponse,
    edge: EdgeContext,
    manifest: Manifest,
    plan: list[tuple[int, int]],
    multipart: tuple[str, str],
    open_ended: bool,
) -> None:
    """Send the bytes of ``plan`` (inclusive byte ranges; ``multipart`` is the boundary,
    empty for one range, and the parts' type), fetching ahead as read-ahead says."""
    boundary, media_type = multipart
    cache = edge.cache
    chunk_size = manifest.chunk_size
    # Plain sockets take the kernel's sendfile (no copies through Python); TLS
    # has no kernel offload here: it takes record-sized writes, each drained.
    transport = request.transport
    tls = transport is not None and transport.get_extra_info("sslcontext") is not None
    plain = edge.sendfile and transport is not None and not tls
    writer = BlockWriter(request, response, tls)
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
        request[STREAMING] = True
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
                    block = (
                        None
                        if sendfile
                        else lease.now(piece.offset_in_chunk, piece.length, writer.block)
                    )
                    if block is not None:
                        await writer.write(block)
                        edge.metrics.bytes_served += piece.length
                    else:
                        await _send_piece(
                            request,
                            writer,
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
    writer: BlockWriter,
    edge: EdgeContext,
    lease: ChunkLease,
    offset: int,
    length: int,
    plain: bool,
) -> None:
    metrics = edge.metrics
    if plain and isinstance(lease, DiskLease) and lease.fd is not None:
        await writer.response.write(b"")  # the header block first: sendfile bypasses aiohttp
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
    async with contextlib.aclosing(lease.blocks(offset, length, writer.block)) as blocks:
        async for block in blocks:
            await writer.write(block)
            metrics.bytes_served += len(block)
