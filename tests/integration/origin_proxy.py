"""A TCP proxy in front of the moto S3 server that can misbehave on cue: the origin
faults of the edge's integration tests."""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass

from tests.helpers import LoopThread


@dataclass
class _Answer:
    """Bytes of the current answer relayed so far, and where to cut it (if at all)."""

    sent: int = 0
    limit: int | None = None


class OriginProxy(LoopThread):
    """A TCP proxy in front of the moto S3 server that can misbehave on cue.

    It reads each request head (GETs carry no body), counts it and records its
    Range, then either forwards it or plays the next queued fault:
    ``"500"`` (an error answer, then close), ``"reset"`` (a TCP reset, no answer),
    ``"stall"`` (never answer), ``"cut"`` (forward, but close after ``cut_after``
    bytes of the answer). ``pause(n)`` holds every connection's answer after its
    first ``n`` bytes until ``release()``: a slow origin, without timing.
    """

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self._upstream = (host, int(port))
        super().__init__()
        self._server: asyncio.AbstractServer | None = None
        self._lock = threading.Lock()
        self._faults: list[str] = []
        self.cut_after = 2000
        self._pause_after: int | None = None
        self._released: asyncio.Event | None = None
        self.ranges: list[tuple[str, int, int]] = []
        self._clients: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _start(self) -> None:
        self._released = asyncio.Event()
        self._released.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def fail_next(self, kind: str, count: int = 1) -> None:
        with self._lock:
            self._faults.extend([kind] * count)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.ranges.clear()

    def gets_for(self, key: str) -> list[tuple[int, int]]:
        """(first, last) of every GET of ``key`` seen so far."""
        with self._lock:
            return [(a, b) for k, a, b in self.ranges if k.endswith(key)]

    def pause(self, after_bytes: int) -> None:
        def apply() -> None:
            assert self._released is not None
            self._pause_after = after_bytes
            self._released.clear()

        self.loop.call_soon_threadsafe(apply)

    def release(self) -> None:
        def apply() -> None:
            assert self._released is not None
            self._pause_after = None
            self._released.set()

        self.loop.call_soon_threadsafe(apply)

    def abort_all(self) -> None:
        """Reset every open client connection (an origin that dies mid-answer)."""

        def apply() -> None:
            for writer in list(self._clients):
                writer.transport.abort()

        self.loop.call_soon_threadsafe(apply)

    def _next_fault(self) -> str | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        pump: asyncio.Task[None] | None = None
        answer = _Answer()
        self._clients.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self._record(head)
                fault = self._next_fault()
                if fault == "500":
                    writer.write(
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                    await writer.drain()
                    return
                if fault == "reset":
                    sock = writer.get_extra_info("socket")
                    # SO_LINGER 0: close() sends a RST instead of a clean FIN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
                    writer.transport.abort()
                    return
                if fault == "stall":
                    await reader.read()  # until the client gives up
                    return
                if upstream is None:
                    upstream = await asyncio.open_connection(*self._upstream)
                    pump = asyncio.create_task(self._pump(upstream[0], writer, answer))
                # Answers come one at a time (no pipelining): count from this one's start.
                answer.sent = 0
                answer.limit = self.cut_after if fault == "cut" else None
                upstream[1].write(head)
                await upstream[1].drain()
        finally:
            if pump is not None:
                pump.cancel()
            if upstream is not None:
                upstream[1].close()
            self._clients.discard(writer)
            writer.close()

    async def _pump(
        self, source: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: _Answer
    ) -> None:
        while True:
            data = await source.read(16 * 1024)
            if not data:
                writer.close()
                return
            pause_after = self._pause_after
            if pause_after is not None and answer.sent + len(data) > pause_after:
                head = data[: max(0, pause_after - answer.sent)]
                writer.write(head)
                await writer.drain()
                answer.sent += len(head)
                data = data[len(head) :]
                assert self._released is not None
                await self._released.wait()
            limit = answer.limit
            if limit is not None and answer.sent + len(data) >= limit:
                writer.write(data[: limit - answer.sent])
                await writer.drain()
                writer.transport.abort()
                return
            writer.write(data)
            answer.sent += len(data)
            await writer.drain()

    def _record(self, head: bytes) -> None:
        text = head.decode("latin-1")
        path = text.split(" ", 2)[1] if text.count(" ") >= 2 else ""
        path = path.split("?", 1)[0]
        first, last = -1, -1
        for line in text.split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "range":
                start, _, end = value.strip().removeprefix("bytes=").partition("-")
                first, last = int(start), int(end)
        with self._lock:
            self.ranges.append((path, first, last))
