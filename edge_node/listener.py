"""The edge's listening sockets: connections the guard bounds, on TLS a TLS layer whose
buffers are small (docs/PROTOCOL.md, "Client limits": memory per stalled reader).

Answers go out in blocks of at most ``cache.BLOCK`` (256 KiB) on plain connections
(kernel sendfile, mostly), and of ``TLS_BLOCK`` (16 KiB, read from disk that size
too) on TLS, each TLS write waiting for the transport to drain below its high-water
mark before the next block is read (``edge_node.body_writer``). asyncio's TLS layer
would otherwise let 512 KiB of encrypted bytes pile up in OpenSSL's outgoing buffer
once the TCP transport's (one whole write) was full: a stalled TLS reader cost about
0.9 MiB. Its marks are set low here (``TLS_WRITE_HIGH``, on the TLS layer and on the
TCP transport under it), so a stalled reader holds a few TLS blocks in user space
besides its kernel socket buffers, and a TLS connection reads into 32 KiB (asyncio's
default is 256 KiB per connection).
"""

from __future__ import annotations

import asyncio
from asyncio import sslproto
from typing import Any, cast

from aiohttp import web

from edge_node.limits import ConnectionGuard

# What a TLS answer reads and writes at a time (one full TLS record), and the high-water
# mark of the TLS layer's outgoing buffer and of the TCP transport under it: past it
# the writer waits (aiohttp's drain) before reading the next block.
TLS_BLOCK = 16 * 1024
TLS_WRITE_HIGH = 16 * 1024


class _EdgeTLS(sslproto.SSLProtocol):
    """asyncio's TLS layer with a 32 KiB read buffer: its default, 256 KiB allocated and
    zeroed for every connection, made each idle TLS client cost a quarter MiB, and
    clients here send small request heads. Its write marks are low too (asyncio's
    TLS default lets 512 KiB of encrypted bytes wait in OpenSSL's buffer)."""

    max_size = 32 * 1024

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.WriteTransport, transport).set_write_buffer_limits(high=TLS_WRITE_HIGH)
        super().connection_made(transport)
        self._set_write_buffer_limits(high=TLS_WRITE_HIGH)  # type: ignore[attr-defined]


class _Refused(asyncio.Protocol):
    """A connection past the cap: closed as soon as it is accepted."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()


class BoundedSite(web.TCPSite):
    """A TCP listener whose connections the guard bounds; on TLS the handshake counts
    against the header timeout."""

    def __init__(
        self, runner: web.BaseRunner, guard: ConnectionGuard, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(runner, *args, **kwargs)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        guard = self._guard
        guard.start()
        loop = asyncio.get_running_loop()
        make_handler = guard.handler_factory(server)
        tls = self._ssl_context
        handshake_timeout = guard.limits.header_timeout

        def accept() -> asyncio.BaseProtocol:
            if guard.full():
                # Refused before any TLS work; the open connections are not disturbed.
                guard.closed["max_connections"] += 1
                return _Refused()
            handler = make_handler()
            if tls is None:
                return handler
            # What loop.create_server(ssl=...) builds, with a smaller read buffer.
            # (typeshed wants a waiter future and an int timeout; asyncio itself passes
            # None and takes any positive number)
            return _EdgeTLS(
                loop,
                handler,
                tls,
                None,  # type: ignore[arg-type]
                server_side=True,
                ssl_handshake_timeout=handshake_timeout,  # type: ignore[arg-type]
            )

        self._server = await loop.create_server(
            accept,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        if self._port == 0 and self._server.sockets:
            self._bound_port = int(self._server.sockets[0].getsockname()[1])
