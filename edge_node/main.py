"""The node agent: ``python -m edge_node``.

One process per node holds what makes it one node to the control plane: the
identity (``edge_node.identity``: registration, renewal), the heartbeat and its
work (warm, evict), the public certificate (``edge_node.public_tls``) and the cache
manager (startup recovery of the shared cache, watermarks, scrub). It serves no
client: ``FSNODE_WORKERS`` worker processes do (``edge_node.worker``, started and
restarted by ``edge_node.workers``), each with the whole S3 data plane, all on the
same ports and the same disk cache. Every change of identity reaches the workers
through the state folder and SIGHUP (``edge_node.node_state``). SIGTERM drains the
workers, then stops the agent; SIGHUP renews the certificate now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from typing import Any

from edge_node import logs
from edge_node.cache import ChunkCache
from edge_node.chunk_hashes import ChunkHashRecorder
from edge_node.control_plane import ControlPlaneClient, Registration
from edge_node.heartbeat import HeartbeatLoop, wait_placed
from edge_node.identity import FatalStartError, NodeIdentity
from edge_node.logs import announce
from edge_node.manifests import ManifestStore
from edge_node.metrics import EdgeMetrics
from edge_node.node_state import NodeState
from edge_node.origin import OriginFetcher
from edge_node.public_tls import PublicTls
from edge_node.published_reader import PublishedReader
from edge_node.settings import EdgeSettings
from edge_node.shares import ShareKeys
from edge_node.workers import WorkerPool, hold_port, settle_heap

log = logging.getLogger("edge_node")


class EdgeNode:
    """One edge node: its identity, heartbeat, cache manager and workers."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.client = ControlPlaneClient(settings.api_url, ca_bundle=settings.ca_bundle)
        self.metrics = EdgeMetrics()
        self.origin = OriginFetcher(
            settings.origin_config(), on_bytes=self.metrics.add_origin_bytes
        )
        # Warm work reads heads and manifests from S3 as the workers do (the bucket
        # comes with registration).
        self.published = PublishedReader(self.origin)
        self.manifests = ManifestStore(self.published, settings.manifest_max_age)
        self.cache = ChunkCache(
            settings.state_dir / "cache",
            self.origin,
            settings.cache_config(),
            hashes=ChunkHashRecorder(self.manifests),
        )
        self.keys = ShareKeys()
        self.identity = NodeIdentity(settings, self.client, self._identity_changed)
        self.state = NodeState()
        # Fetches the public certificate the heartbeat names; workers load its files.
        self.public_tls = PublicTls(settings.state_dir, self.client)
        self.workers: WorkerPool | None = None

    # The identity lifecycle, as callers (and tests) knew it on the node.
    @property
    def registration(self) -> Registration | None:
        return self.identity.registration

    @property
    def renewals(self) -> int:
        return self.identity.renewals

    def request_renewal(self) -> None:
        self.identity.request_renewal()

    async def register(self) -> Registration:
        return await self.identity.register()

    async def reregister(self, rejected: str | None = None) -> Registration:
        return await self.identity.reregister(rejected)

    async def renew(self) -> None:
        await self.identity.renew()

    async def renew_forever(self, stop: asyncio.Event) -> None:
        await self.identity.renew_forever(stop)

    # -- telling the workers -------------------------------------------------------

    def _identity_changed(self, registration: Registration, anew: bool) -> None:
        self.keys.update(registration.share_public_keys)
        self.published.bucket = registration.bucket
        self.state.node_id = registration.node_id
        self.state.bucket = registration.bucket
        self.state.chunk_size = registration.chunk_size
        self.state.share_public_keys = dict(registration.share_public_keys)
        if anew:
            # Work addressed to the old identity (evict a deleted file) never reaches
            # the new one: every cached manifest is checked again before it serves.
            # The chunks stay: keyed by file and version and verified, whoever holds them.
            self.manifests.distrust_all()
            self.state.distrusted += 1
        self._publish()

    def _forget(self, file_id: str) -> None:
        self.state.forget(file_id)
        self._publish()

    def _keys_changed(self, pems: dict[str, str]) -> None:
        if pems != self.state.share_public_keys:
            self.state.share_public_keys = dict(pems)
            self._publish()

    async def _heartbeat_answer(self, answer: dict[str, Any]) -> None:
        await self.public_tls.on_heartbeat(answer)
        public = self.public_tls
        if public.serial is not None and public.serial != self.state.public_serial:
            self.state.public_name = f"*{public.suffix}"
            self.state.public_serial = public.serial
            self._publish()

    def _publish(self) -> None:
        self.state.save(self.settings.state_dir)
        if self.workers is not None:
            self.workers.signal_all(signal.SIGHUP)

    # -- running -----------------------------------------------------------------

    def _hold_ports(self) -> tuple[list[socket.socket], dict[str, int | None]]:
        settings = self.settings
        wanted = {"https": settings.port, "http": settings.http_port, "admin": settings.admin_port}
        held: list[socket.socket] = []
        ports: dict[str, int | None] = {}
        for name, port in wanted.items():
            if port is None:
                ports[name] = None
                continue
            sock = hold_port(settings.host, port)
            held.append(sock)
            ports[name] = int(sock.getsockname()[1])
        return held, ports

    async def serve(self, stop: asyncio.Event) -> int:
        registration = await self.identity.register_until_answered(stop)
        if registration is None:
            return 0
        await self.cache.open(recover=True, manage=True)
        held, ports = self._hold_ports()
        self.workers = WorkerPool(self.settings.workers, ports)
        heartbeat = HeartbeatLoop(
            client=self.client,
            cache=self.cache,
            manifests=self.manifests,
            keys=self.keys,
            metrics=self.metrics,
            capacity_bytes=self.settings.capacity_bytes,
            interval=registration.heartbeat_interval,
            reregister=self.reregister,
            on_forget=self._forget,
            on_keys=self._keys_changed,
            on_answer=self._heartbeat_answer,
            on_drained=self.identity.leave,
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.workers.start()
            settle_heap()
            tasks = [
                asyncio.create_task(heartbeat.run(stop), name="heartbeat"),
                asyncio.create_task(self.renew_forever(stop), name="renewal"),
            ]
            log.info("serving workers=%d ports=%s", self.settings.workers, ports)
            # Ready once placed: a beat has had the control plane see this certificate
            # at the endpoint (a new node is pending until then).
            await wait_placed(heartbeat, stop, self.settings.endpoint)
            announce(f"edge ready node_id={registration.node_id} url={self.settings.endpoint}")
            await stop.wait()
        finally:
            log.info("stopping: workers finish their open responses")
            stop.set()
            await self.workers.stop(self.settings.shutdown_grace_seconds)
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for sock in held:
                sock.close()
            await self.manifests.close()
            await self.cache.close()
            await self.origin.close()
            await self.client.close()
        return 0


async def run(settings: EdgeSettings) -> int:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    node = EdgeNode(settings)
    loop.add_signal_handler(signal.SIGHUP, node.request_renewal)
    try:
        return await node.serve(stop)
    except FatalStartError as exc:
        log.error("%s", exc)
        await node.client.close()
        return 2


def main() -> int:
    try:
        settings = EdgeSettings.from_env()
    except ValueError as exc:
        print(f"edge: bad settings: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    return asyncio.run(run(settings))
