"""A TCP proxy that limits each connection's bandwidth, standing in for S3's
per-connection limit in front of the moto server (which has none on loopback).

Each accepted connection gets its own pacing: bytes from the origin are let through
no faster than ``rate`` bytes per second (with a small burst), so a client that
opens N connections gets about N times the rate, as with S3. The request direction
is not limited (requests are small).

Runs in a thread of the caller (``ThrottleProxy``) or as its own process
(``python -m bench.throttle_proxy --target HOST:PORT --rate BYTES``), which keeps its
CPU use away from the process that measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BLOCK = 64 * 1024


@dataclass(slots=True)
class ProxyStats:
    connections: int = 0
    bytes_down: int = 0


class ThrottleProxy:
    """Listen on ``127.0.0.1:port`` and forward to ``target``, paced per connection."""

    def __init__(self, target: tuple[str, int], rate: float, port: int = 0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.target = target
        self.rate = rate
        self.port = port
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            origin_r, origin_w = await asyncio.wait_for(
                asyncio.open_connection(*self.target), timeout=10
            )
        except (OSError, TimeoutError):
            client_w.close()
            return
        up = asyncio.create_task(self._pipe(client_r, origin_w, paced=False))
        down = asyncio.create_task(self._pipe(origin_r, client_w, paced=True))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            for writer in (client_w, origin_w):
                writer.close()
            for task in (up, down):
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, paced: bool
    ) -> None:
        # Pacing: after n bytes the connection may not be ahead of start + n / rate
        # (minus one block of burst), so the long-run rate is the limit.
        start = time.monotonic()
        sent = 0
        block = min(BLOCK, max(1024, int(self.rate / 20))) if paced else BLOCK
        try:
            while data := await reader.read(block):
                writer.write(data)
                await writer.drain()
                if not paced:
                    continue
                sent += len(data)
                self.stats.bytes_down += len(data)
                ahead = (sent - block) / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass


@dataclass(slots=True)
class ProxyProcess:
    """A proxy running as a child process in its own session."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def start_proxy_process(target: tuple[str, int], rate: float, log: Path) -> ProxyProcess:
    """Start ``python -m bench.throttle_proxy`` and wait for the port it prints."""
    log.parent.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH", "")])),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.throttle_proxy",
            "--target",
            f"{target[0]}:{target[1]}",
            "--rate",
            str(int(rate)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        start_new_session=True,
        env=env,
        cwd=repo,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()  # "proxy ready port=N" (or EOF if it died)
    if not line.startswith("proxy ready port="):
        process.kill()
        raise RuntimeError(f"throttle proxy did not start: {line!r}; see {log}")
    return ProxyProcess(process, int(line.split("=", 1)[1]))


async def _serve(target: tuple[str, int], rate: float, port: int) -> None:
    proxy = ThrottleProxy(target, rate, port)
    bound = await proxy.start()
    print(f"proxy ready port={bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, help="HOST:PORT of the origin")
    parser.add_argument("--rate", type=float, required=True, help="bytes/s per connection")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    asyncio.run(_serve((host or "127.0.0.1", int(port)), args.rate, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
