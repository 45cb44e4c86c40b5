"""A TCP proxy that holds every answer back by a delay the caller can change while it runs:
a control plane that answers slowly (API Gateway and a cold Lambda), put in front of the
local control plane for an edge's node routes.

It runs on its own event loop in a thread of the benchmark process (it moves few bytes:
registration, heartbeats). ``delay`` applies to each block of the answer direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class LatencyProxy:
    """Listen on ``127.0.0.1`` and forward to ``target``, answers held ``delay`` seconds."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.delay = 0.0
        self.port = 0
        self.answers = 0  # answer blocks relayed (a check that traffic went through)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        with contextlib.suppress(RuntimeError, TimeoutError):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            self._pipe(client_r, upstream_w, delayed=False),
            self._pipe(upstream_r, client_w, delayed=True),
            return_exceptions=True,
        )

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        try:
            while block := await source.read(64 * 1024):
                if delayed:
                    self.answers += 1
                    if self.delay > 0:
                        await asyncio.sleep(self.delay)
                sink.write(block)
                await sink.drain()
        finally:
            sink.close()
