"""One worker process: serves the node's ports (SO_REUSEPORT) from the shared cache.

Started by the node agent (``edge_node.main``, see ``edge_node.workers``), which
owns the node's identity. Each worker runs the whole data plane of its own: heads,
manifests and folder listings read from S3, early first reads, playlist prefetch,
and its listeners' client limits (``edge_node.limits``: the connection cap counts
this worker's connections). The worker reads the certificate files (the node's and
the public one) and the node state (``edge_node.node_state``) at start and again on
SIGHUP, into the same SSLContexts and share keys, so open connections keep going. SIGTERM stops
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
from edge_node.context import EdgeContext
from edge_node.early_reads import EarlyReads, held_on_disk
from edge_node.folders import FolderIndex
from edge_node.limits import ConnectionGuard
from edge_node.listener import BoundedSite
from edge_node.manifests import ManifestStore
from edge_node.metrics import EdgeMetrics
from edge_node.node_state import NodeState
from edge_node.origin import OriginFetcher
from edge_node.prefetch import PlaylistPrefetch
from edge_node.public_tls import PublicTls
from edge_node.published_reader import PublishedReader
from edge_node.readahead import ReadAhead
from edge_node.server import build_admin_app, build_app
from edge_node.settings import EdgeSettings
from edge_node.shares import ShareKeys
from edge_node.workers import PORTS_ENV, READY, settle_heap

log = logging.getLogger("edge_node.worker")


class Worker:
    def __init__(self, settings: EdgeSettings, ports: dict[str, int | None]) -> None:
        self.settings = settings
        self.ports = ports
        state_dir = settings.state_dir
        self.ssl_context = tls.server_context(state_dir / tls.CERT_FILE, state_dir / tls.KEY_FILE)
        self.state = NodeState.load(state_dir)
        # The public certificate is asked for by SNI; the node agent fetches it.
        self.public_tls = PublicTls(state_dir, None)
        self.public_tls.install(self.ssl_context)
        self._use_public(self.state)
        self.metrics = EdgeMetrics()
        self.connections = ConnectionGuard(settings.client_limits)
        self.metrics.connections = self.connections
        self.origin = OriginFetcher(
            settings.origin_config(), on_bytes=self.metrics.add_origin_bytes
        )
        # The data plane reads S3 only: heads, manifests and folder listings are the
        # objects the control plane publishes (the bucket is the node's registration's).
        self.published = PublishedReader(self.origin, self.state.bucket)
        self.manifests = ManifestStore(self.published, settings.manifest_max_age)
        self.folders = FolderIndex(self.published, settings.manifest_max_age)
        self.early = EarlyReads(
            self.origin, self.published, settings.origin_first_part_bytes, self.state.chunk_size
        )
        self.cache = ChunkCache(
            state_dir / "cache",
            self.early,
            settings.cache_config(),
            hashes=ChunkHashRecorder(self.manifests),
        )
        self.early.held = held_on_disk(self.cache)
        self.keys = ShareKeys(self.state.share_public_keys)
        self.context = EdgeContext(
            cache=self.cache,
            manifests=self.manifests,
            keys=self.keys,
            folders=self.folders,
            metrics=self.metrics,
            node_id=self.state.node_id,
            sendfile=settings.sendfile,
            readahead=ReadAhead(settings.readahead_chunks),
            origin=self.origin,
            trusted_proxy_hops=settings.trusted_proxy_hops,
            early=self.early,
            published=self.published,
            prefetch=PlaylistPrefetch(
                self.cache, self.manifests, self.folders, settings.prefetch_config(), self.early
            ),
        )

    def _use_public(self, state: NodeState) -> None:
        """Load the public certificate the node agent stored, if it is a new one."""
        if (
            state.public_name
            and state.public_serial
            and state.public_serial != self.public_tls.serial
        ):
            self.public_tls.use_stored(state.public_name, state.public_serial)

    def reload(self) -> None:
        """SIGHUP: a renewed certificate (private or public), a new identity, keys,
        manifests to forget."""
        state_dir = self.settings.state_dir
        try:
            self.ssl_context.load_cert_chain(
                str(state_dir / tls.CERT_FILE), str(state_dir / tls.KEY_FILE)
            )
            state = NodeState.load(state_dir)
            self._use_public(state)
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
        self.published.bucket = state.bucket
        self.early.chunk_size = state.chunk_size
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
        sites: list[web.BaseSite] = [
            BoundedSite(
                runner,
                self.connections,
                settings.host,
                self.ports["https"],
                ssl_context=self.ssl_context,
                reuse_port=True,
            )
        ]
        if self.ports.get("http") is not None:
            sites.append(
                BoundedSite(
                    runner, self.connections, settings.host, self.ports["http"], reuse_port=True
                )
            )
        admin: web.AppRunner | None = None
        if admin_port is not None:
            admin = web.AppRunner(build_admin_app(self.context), access_log=None)
            await admin.setup()
            sites.append(web.TCPSite(admin, settings.host, admin_port, reuse_port=True))
        # The S3 client is built before the first request, which then signs at once.
        await self.origin.prepare()
        for site in sites:
            await site.start()
        loader = asyncio.create_task(self.watch(stop))
        settle_heap()
        print(READY, flush=True)
        try:
            await stop.wait()
        finally:
            log.info("worker stopping: no new connections, finishing open responses")
            await runner.cleanup()
            await self.connections.close()
            if admin is not None:
                await admin.cleanup()
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            if self.context.prefetch is not None:
                await self.context.prefetch.close()
            await self.manifests.close()
            await self.early.close()
            await self.cache.close()
            await self.origin.close()


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
