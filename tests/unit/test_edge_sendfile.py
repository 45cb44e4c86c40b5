"""Kernel sendfile of chunk ranges (edge_node.sendfile) over a real socket pair and a
real asyncio transport: the socket taking it all at once, a full socket handing the
rest to the loop, and a file that ends early."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fsnode_core.errors import IntegrityError

from edge_node.sendfile import send_range

DATA = os.urandom(3 * 1024 * 1024)


async def _pair(send_buffer: int | None = None) -> tuple[asyncio.Transport, socket.socket]:
    ours, theirs = socket.socketpair()
    if send_buffer is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    theirs.setblocking(False)
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, ours)
    return transport, theirs


async def _receive(peer: socket.socket, count: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()
    while len(got) < count:
        block = await loop.sock_recv(peer, 1 << 20)
        if not block:
            break
        got += block
    return bytes(got)


@pytest.fixture
def chunk_fd(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "chunk"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDONLY)
    yield fd
    os.close(fd)


@pytest.mark.parametrize("send_buffer", [None, 4096], ids=["roomy", "full-socket"])
async def test_a_range_arrives_whole_and_in_order(
    chunk_fd: int, send_buffer: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    offset, count = 12_345, len(DATA) - 20_000

    handed_to_loop: list[int] = []
    loop = asyncio.get_running_loop()
    real = loop.sendfile

    async def counting(transport: Any, file: Any, offset: int, count: int) -> int:
        handed_to_loop.append(count)
        return await real(transport, file, offset, count)

    monkeypatch.setattr(loop, "sendfile", counting)
    transport, peer = await _pair(send_buffer)
    try:
        transport.write(b"HEAD")  # what aiohttp wrote first must stay first
        reader = asyncio.create_task(_receive(peer, 4 + count))
        assert await send_range(transport, chunk_fd, offset, count) == count
        received = await asyncio.wait_for(reader, 30)
    finally:
        transport.close()
        peer.close()

    assert received == b"HEAD" + DATA[offset : offset + count]
    if send_buffer is not None:  # the socket filled up: the loop sent the rest
        assert handed_to_loop and 0 < handed_to_loop[0] < count


async def test_a_file_that_ends_early_is_an_integrity_error(chunk_fd: int) -> None:
    transport, peer = await _pair()
    try:
        reader = asyncio.create_task(_receive(peer, 1000))
        with pytest.raises(IntegrityError):
            await send_range(transport, chunk_fd, len(DATA) - 1000, 5000)
        assert await asyncio.wait_for(reader, 30) == DATA[-1000:]
    finally:
        transport.close()
        peer.close()
