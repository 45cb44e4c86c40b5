"""Every client is bounded, as nginx bounds them (docs/PROTOCOL.md, "Client limits").

- **Header timeout** (nginx ``client_header_timeout``): a new connection (its TLS
  handshake included) or a keep-alive one whose next request has begun must send the
  whole request head within ``header_timeout`` seconds, or it is closed. Slowloris
  clients trickling header bytes are closed on time, whatever they send.
- **Keep-alive timeout** (``keepalive_timeout``): an idle connection between requests
  is closed after ``keepalive_timeout`` seconds.
- **Send timeout** (``send_timeout``): while an answer has bytes waiting for the
  client, the client must acknowledge some of them every ``send_timeout`` seconds (the
  kernel's ``tcpi_bytes_acked``, so the sendfile path is covered too), or the request
  is cancelled and the connection dropped with its buffers.
- **Connection cap** (nginx ``worker_connections``): past ``max_connections`` open
  connections, a new one is closed as soon as it is accepted, before any TLS work; the
  open ones are not disturbed.

Memory: what a TLS connection buffers is bounded where it is built
(``edge_node.listener``) and where its answer is written (``edge_node.body_writer``);
freed buffers go back to the system once connections have closed
(``edge_node.memory_release``), so RSS returns to its baseline after a burst.

One ``ConnectionGuard`` per process: ``listener.BoundedSite`` listeners create its handlers,
and a sweep (every ``tick`` seconds) applies the timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import socket
import struct
import termios
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from edge_node.canonical import CLIENT_CLOSED_REQUEST, parse_error
from edge_node.memory_release import release_free_memory

log = logging.getLogger(__name__)

# After connections closed, memory is given back at most this often (a full garbage
# collection and malloc_trim: a few milliseconds on a large heap).
TRIM_INTERVAL = 10.0
# struct tcp_info (linux/tcp.h): tcpi_bytes_acked is the u64 at byte 120.
_TCP_INFO_LEN = 136
_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_OFFSET = 120
# Phases of a connection, for the sweep.
_HEADER, _IDLE, _BUSY = 0, 1, 2


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """How long a client may take, and how many may be connected (see module doc)."""

    header_timeout: float = 20.0
    keepalive_timeout: float = 75.0
    send_timeout: float = 60.0
    max_connections: int = 4096

    def __post_init__(self) -> None:
        if min(self.header_timeout, self.keepalive_timeout, self.send_timeout) <= 0:
            raise ValueError("client timeouts must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")

    @property
    def tick(self) -> float:
        """How often the sweep runs: a timeout is applied at most a tick late."""
        return min(1.0, self.header_timeout / 4, self.send_timeout / 4)


class ConnectionGuard:
    """The open client connections of this process and the sweep that bounds them."""

    def __init__(self, limits: ClientLimits) -> None:
        self.limits = limits
        # Why connections were closed by a limit (header_timeout, keepalive_timeout,
        # send_timeout, max_connections): the edge's metrics show this counter.
        self.closed: Counter[str] = Counter()
        self._open: set[BoundedHandler] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed_since_trim = 0
        self._last_trim = 0.0
        self.memory_releases = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def handler_factory(self, server: web.Server) -> Callable[[], BoundedHandler]:
        # The server's own handler arguments (access log, limits on header sizes).
        # aiohttp's keep-alive timer stays as a backstop, a little after the sweep's.
        kwargs: dict[str, Any] = {
            **getattr(server, "_kwargs", {}),
            "keepalive_timeout": self.limits.keepalive_timeout + 2 * self.limits.tick + 1,
        }

        def make() -> BoundedHandler:
            return BoundedHandler(server, self, loop=asyncio.get_running_loop(), **kwargs)

        return make

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="client-limits")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def full(self) -> bool:
        return len(self._open) >= self.limits.max_connections

    def admit(self, handler: BoundedHandler) -> bool:
        if self.full():  # (handshakes that finish together may pass the accept check)
            self.closed["max_connections"] += 1
            return False
        self._open.add(handler)
        return True

    def forget(self, handler: BoundedHandler) -> None:
        if handler in self._open:
            self._open.discard(handler)
            self._closed_since_trim += 1

    async def _sweep_forever(self) -> None:
        tick = self.limits.tick
        while True:
            await asyncio.sleep(tick)
            try:
                self.sweep(asyncio.get_running_loop().time())
            except Exception:  # a bug here must not end the bounds for good
                log.exception("client limits sweep failed")

    def sweep(self, now: float) -> None:
        limits = self.limits
        for handler in list(self._open):
            reason = handler.overdue(now, limits)
            if reason is not None:
                self.closed[reason] += 1
                log.info("closing a client connection: %s", reason)
                handler.drop()
        if self._closed_since_trim and time.monotonic() - self._last_trim >= TRIM_INTERVAL:
            self._closed_since_trim = 0
            self._last_trim = time.monotonic()
            release_free_memory()
            self.memory_releases += 1


class BoundedHandler(RequestHandler):
    """aiohttp's connection handler, with the state the sweep needs: which phase the
    connection is in since when, and the client's acknowledged bytes."""

    __slots__ = ("_acked", "_guard", "_phase", "_progress_at", "_request_task", "_since")

    def __init__(self, server: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._guard = guard
        self._phase = _HEADER
        self._since = 0.0
        self._acked = -1
        self._progress_at = 0.0
        self._request_task: asyncio.Task[Any] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._since = self._loop.time()
        if not self._guard.admit(self):
            # Over the cap: close at once; the open connections are not disturbed.
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase == _IDLE:
            # The next request has begun: its head is due within the header timeout.
            self._phase, self._since = _HEADER, self._loop.time()
        super().data_received(data)
        if self._phase == _HEADER and self._messages:
            self._phase = _BUSY

    async def _handle_request(self, request: Any, start_time: Any, request_handler: Any) -> Any:
        self._phase = _BUSY
        self._request_task = asyncio.current_task()
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            self._request_task = None
            self._phase, self._since = _IDLE, self._loop.time()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to an unparsable request or a failed handler, in the JSON
        shape and without echoing the request (edge_node.canonical)."""
        if status >= 500 and not isinstance(exc, (HttpProcessingError, ConnectionError)):
            self.log_exception("error handling a request", exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has begun: it cannot become an error")
        return parse_error(status, exc)

    def overdue(self, now: float, limits: ClientLimits) -> str | None:
        """The limit this connection is past, if any."""
        if self._phase == _HEADER:
            return "header_timeout" if now - self._since > limits.header_timeout else None
        transport = self.transport
        if transport is None:
            return None
        if _bytes_waiting(transport):
            # An answer (or its end) waits for the client: it must take some of it.
            acked = _bytes_acked(transport)
            if acked is None or acked != self._acked:
                self._acked = -1 if acked is None else acked
                self._progress_at = now
                return None
            return "send_timeout" if now - self._progress_at > limits.send_timeout else None
        self._acked, self._progress_at = -1, now
        if self._phase == _IDLE and not self._messages:
            return "keepalive_timeout" if now - self._since > limits.keepalive_timeout else None
        return None  # a handler at work (waiting on the origin has its own timeouts)

    def drop(self) -> None:
        """Cancel the request in progress and drop the connection with its buffers
        (a plain close would wait for a stalled client to take them)."""
        task = self._request_task
        if task is not None:
            task.cancel()  # first: a sendfile in flight unhooks from the socket
        transport = self.transport
        if transport is not None:
            transport.abort()


async def final_status(request: web.BaseRequest, response: web.StreamResponse) -> int:
    """The status to count for an answer the handler finished: 499 when the client
    was gone before it ended. A write to a lost TLS connection can succeed silently
    (the TCP transport drops it, and the TLS layer learns of the loss a loop turn
    later), so one turn is given for that news to arrive."""
    transport = request.transport
    if transport is not None and response.prepared and request.method != "HEAD":
        await asyncio.sleep(0)
        # Nothing of ours closes a connection before its handler returns.
        if transport.is_closing():
            return CLIENT_CLOSED_REQUEST
    return response.status


def _bytes_acked(transport: asyncio.BaseTransport) -> int | None:
    sock = transport.get_extra_info("socket")
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return None
    if len(info) < _BYTES_ACKED_OFFSET + 8:
        return None
    return int(_BYTES_ACKED.unpack_from(info, _BYTES_ACKED_OFFSET)[0])


def _bytes_waiting(transport: asyncio.BaseTransport) -> bool:
    """Whether bytes wait for the client: in user space or in the socket's send queue."""
    size = getattr(transport, "get_write_buffer_size", None)
    if size is not None and size() > 0:
        return True
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:  # SIOCOUTQ: bytes in the socket's send queue, not yet acknowledged
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return False
    return int.from_bytes(queued, "little") > 0
