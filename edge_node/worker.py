"""One worker process: serves the node's ports (SO_REUSEPORT) from the shared cache.

Started by the node agent (``edge_node.main``, see ``edge_node.workers``), which
owns the node's identity. The worker reads the certificate files and the node
state (``edge_node.node_state``) at start and again on SIGHUP, into the same
SSLContext and share keys, so open connections keep going. SIGTERM stops
accepting, lets open responses finish (``FSNODE_SHUTDOWN_GRACE_SECONDS``) and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys

from aiohttp import web

from edge_node import logs, tls
from edge_node.cache import ChunkCache
from edge_node.chunk_hashes import ChunkHashRecorder
from edge_node.control_plane import ControlPlaneClient
from edge_node.manifests import ManifestStore
from edge_node.metrics import EdgeMetrics
from edge_node.node_state import NodeState
from edge_node.origin import OriginFetcher
from edge_node.server import EdgeContext, ReadAhead, build_admin_app, build_app
from edge_node.settings import EdgeSettings
from edge_node.shares import ShareKeys
from edge_node.workers import PORTS_ENV, READY

log = logging.getLogger("edge_node.worker")


class Worker:
    def __init__(self, settings: EdgeSettings, ports: dict[str, int | None]) -> None:
        self.settings = settings
        self.ports = ports
        state_dir = settings.state_dir
        self.ssl_context = tls.server_context(state_dir / tls.CERT_FILE, state_dir / tls.KEY_FILE)
        self.state = NodeState.load(state_dir)
        self.metrics = EdgeMetrics()
        self.client = ControlPlaneClient(settings.api_url, ca_bundle=settings.ca_bundle)
        if self.state.node_id and self.state.credential:
            self.client.set_identity(self.state.node_id, self.state.credential)
        self.origin = OriginFetcher(
            settings.origin_config(), on_bytes=self.metrics.add_origin_bytes
        )
        self.manifests = ManifestStore(
            self.client, state_dir, fresh_seconds=settings.manifest_refresh_seconds
        )
        self.cache = ChunkCache(
            state_dir / "cache",
            self.origin,
            settings.cache_config(),
            hashes=ChunkHashRecorder(self.manifests),
        )
        self.keys = ShareKeys(self.state.share_public_keys)
        self.context = EdgeContext(
            cache=self.cache,
            manifests=self.manifests,
            keys=self.keys,
            metrics=self.metrics,
            node_id=self.state.node_id,
            sendfile=settings.sendfile,
            readahead=ReadAhead(settings.readahead_chunks),
            origin=self.origin,
            trusted_proxy_hops=settings.trusted_proxy_hops,
        )

    def reload(self) -> None:
        """SIGHUP: a renewed certificate, a new identity, keys, manifests to forget."""
        state_dir = self.settings.state_dir
        try:
            self.ssl_context.load_cert_chain(
                str(state_dir / tls.CERT_FILE), str(state_dir / tls.KEY_FILE)
            )
            state = NodeState.load(state_dir)
        except (OSError, ValueError, ssl.SSLError) as exc:
            log.error("could not reload the node's identity: %s", exc)
            return
        for seq, file_id in state.forgotten:
            if seq > self.state.last_forgotten:
                self.manifests.forget(file_id)
        if state.distrusted != self.state.distrusted:
            self.manifests.distrust_all()
        if state.share_public_keys != self.state.share_public_keys:
            self.keys.update(state.share_public_keys)
        if state.node_id and state.credential:
            self.client.set_identity(state.node_id, state.credential)
        self.context.node_id = state.node_id
        self.state = state
        log.info("reloaded the node's identity node_id=%s", state.node_id)

    async def watch(self, stop: asyncio.Event) -> None:
        """Report this worker's load for the node's heartbeat; stop (draining) if the
        node agent is gone (a SIGKILL to it alone must not leave workers serving a
        node that no longer beats)."""
        parent = os.getppid()
        while not stop.is_set():
            self.cache.report_load(self.metrics.requests_in_flight)
            if os.getppid() != parent:
                log.error("the node agent is gone; stopping")
                stop.set()
                return
            await asyncio.sleep(self.cache.config.touch_interval)

    async def serve(self, stop: asyncio.Event) -> None:
        settings = self.settings
        await self.cache.open(recover=False, manage=False)
        admin_port = self.ports.get("admin")
        runner = web.AppRunner(
            build_app(self.context, admin=admin_port is None),
            shutdown_timeout=settings.shutdown_grace_seconds,
            access_log=None,
        )
        await runner.setup()
        sites = [
            web.TCPSite(
                runner, settings.host, self.ports["https"], ssl_context=self.ssl_context,
                reuse_port=True,
            )
        ]
        if self.ports.get("http") is not None:
            sites.append(web.TCPSite(runner, settings.host, self.ports["http"], reuse_port=True))
        admin: web.AppRunner | None = None
        if admin_port is not None:
            admin = web.AppRunner(build_admin_app(self.context), access_log=None)
            await admin.setup()
            sites.append(web.TCPSite(admin, settings.host, admin_port, reuse_port=True))
        for site in sites:
            await site.start()
        loader = asyncio.create_task(self.watch(stop))
        print(READY, flush=True)
        try:
            await stop.wait()
        finally:
            log.info("worker stopping: no new connections, finishing open responses")
            await runner.cleanup()
            if admin is not None:
                await admin.cleanup()
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            await self.manifests.close()
            await self.cache.close()
            await self.origin.close()
            await self.client.close()


async def run(settings: EdgeSettings) -> int:
    ports = json.loads(os.environ[PORTS_ENV])
    worker = Worker(settings, ports)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, worker.reload)
    await worker.serve(stop)
    return 0


def main() -> int:
    settings = EdgeSettings.from_env()
    logs.configure(settings.log_level)
    return asyncio.run(run(settings))


if __name__ == "__main__":
    sys.exit(main())
