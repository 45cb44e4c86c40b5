"""The throttling proxy forwards bytes intact in both directions and counts them."""

from __future__ import annotations

import asyncio
import os

from bench.throttle_proxy import ThrottleProxy


async def _exchange(payload: bytes) -> tuple[bytes, ThrottleProxy]:
    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readexactly(5)
        assert request == b"hello"
        writer.write(payload)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(origin, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # A fast rate: this checks forwarding, not timing.
    proxy = ThrottleProxy(("127.0.0.1", port), rate=64 * 1024 * 1024)
    proxy_port = await proxy.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(b"hello")
        await writer.drain()
        received = await asyncio.wait_for(reader.read(), timeout=30)
        writer.close()
    finally:
        await proxy.close()
        server.close()
        await server.wait_closed()
    return received, proxy


async def test_forwards_bytes_intact() -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    received, proxy = await _exchange(payload)
    assert received == payload
    assert proxy.stats.connections == 1
    assert proxy.stats.bytes_down == len(payload)
