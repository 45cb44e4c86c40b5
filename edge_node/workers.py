"""The node agent's worker processes: started, watched, restarted, signalled, drained.

Each worker (``python -m edge_node.worker``) binds the node's ports with
SO_REUSEPORT, so the kernel spreads connections across them (a listening socket
shared by inheritance would let asyncio's accept loop in one worker take a whole
burst). The agent holds each port with a bound, non-listening SO_REUSEPORT socket
of its own, so the port stays the node's while a worker restarts. A worker that
exits is started again (with a pause that doubles while it keeps failing); a worker
that exits 0 was told to stop (SIGTERM, also when the whole process group gets it)
and is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)

PORTS_ENV = "FSNODE_WORKER_PORTS"
INDEX_ENV = "FSNODE_WORKER_INDEX"
READY = "worker ready"
# glibc's malloc arenas for a worker, unless the environment sets its own: one. A
# thread's arena keeps what the thread freed (a fill's reads and hashes run in
# threads); with the GIL serializing Python's allocations more arenas buy nothing, and
# agent + 2 workers under the bench's 64 HTTPS streams peaked at 265 MiB with one
# against 285 with glibc's default (one run each; the worker that had filled the cache
# held about 15 MiB less).
MALLOC_ARENAS = "1"


def settle_heap() -> None:
    """Once started: what the process holds for good (modules, settings, the SSL
    context: about 60,000 objects) goes to the collector's permanent generation, so
    a full collection (the closed-connection cleanup in ``edge_node.limits``, or
    CPython's own) walks only what requests created. A full pass over it all held
    the event loop about 200 ms on the shared 2-core bench machine, every
    connection waiting; frozen, it takes microseconds."""
    gc.collect()
    gc.freeze()


def hold_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) ``host:port`` with SO_REUSEPORT; port 0 picks one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


@dataclass(slots=True)
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0


class WorkerPool:
    def __init__(self, count: int, ports: dict[str, int | None]) -> None:
        self._workers = [_Worker(i) for i in range(count)]
        self._ports = ports
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []
        self.restarts = 0

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process and w.process.returncode is None]

    async def start(self) -> None:
        """Start every worker and wait until each serves."""
        await asyncio.gather(*(self._spawn(worker) for worker in self._workers))
        self._watchers = [
            asyncio.create_task(self._watch(worker), name=f"worker-{worker.index}")
            for worker in self._workers
        ]

    async def _spawn(self, worker: _Worker) -> None:
        env = {
            "MALLOC_ARENA_MAX": MALLOC_ARENAS,
            **os.environ,
            PORTS_ENV: json.dumps(self._ports),
            INDEX_ENV: str(worker.index),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_node.worker", env=env, stdout=asyncio.subprocess.PIPE
        )
        worker.process = process
        assert process.stdout is not None
        line = (await process.stdout.readline()).decode().strip()
        if line != READY:
            raise RuntimeError(f"worker {worker.index} did not start: {line or 'no answer'}")
        log.info("worker started index=%d pid=%d", worker.index, process.pid)

    async def _watch(self, worker: _Worker) -> None:
        pause = 0.5
        while True:
            process = worker.process
            assert process is not None
            code = await process.wait()
            if self._stopping or code == 0:
                return
            log.error(
                "worker exited index=%d pid=%d code=%d; restarting", worker.index, process.pid, code
            )
            await asyncio.sleep(pause)
            if self._stopping:
                return
            try:
                await self._spawn(worker)
                self.restarts += 1
                pause = 0.5
            except (OSError, RuntimeError) as exc:
                log.error("worker restart failed index=%d: %s", worker.index, exc)
                pause = min(pause * 2, 30.0)

    def signal_all(self, sig: signal.Signals) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    async def stop(self, grace: float) -> None:
        """SIGTERM every worker (each drains its open responses), SIGKILL what is
        left after ``grace`` seconds."""
        self._stopping = True
        self.signal_all(signal.SIGTERM)
        processes = [w.process for w in self._workers if w.process is not None]
        waits = [asyncio.create_task(p.wait()) for p in processes]
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=grace + 5)
            if pending:
                self.signal_all(signal.SIGKILL)
                await asyncio.gather(*pending, return_exceptions=True)
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
