"""Bootstrap: key and CSR, registration (retried), certificate, HTTPS server,
heartbeats, and a graceful stop on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import ssl
import sys
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from fsnode_core.errors import Conflict, FsnodeError, Unavailable

from edge_node import tls
from edge_node.cache import ChunkCache
from edge_node.control_plane import ControlPlaneClient, Registration
from edge_node.heartbeat import HeartbeatLoop
from edge_node.manifests import ChunkInfo, Manifest, ManifestStore
from edge_node.metrics import EdgeMetrics
from edge_node.origin import OriginFetcher
from edge_node.server import EdgeContext, ShareKeys, build_app
from edge_node.settings import EdgeSettings

log = logging.getLogger("edge_node")

IDEMPOTENCY_FILE = "register.key"


class FatalStartError(Exception):
    """Registration was refused for a reason retrying cannot fix (bad token, bad CSR)."""


class EdgeNode:
    """One running edge: owns the server, the cache and the background loops."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.client = ControlPlaneClient(settings.api_url, ca_bundle=settings.ca_bundle)
        self.metrics = EdgeMetrics()
        self.origin = OriginFetcher(on_bytes=self.metrics.add_origin_bytes)
        self.cache = ChunkCache(settings.state_dir / "cache", settings.cache_max_bytes, self._fetch)
        self.manifests = ManifestStore(self.client, settings.state_dir)
        self.keys = ShareKeys()
        self.registration: Registration | None = None
        self.ssl_context: ssl.SSLContext | None = None
        self._key: Any = None
        self._runner: web.AppRunner | None = None

    async def _fetch(self, manifest: Manifest, chunk: ChunkInfo) -> bytes:
        return await self.origin.fetch(manifest.bucket, manifest.key, chunk.offset, chunk.length)

    async def register(self) -> Registration:
        """One registration call; stores the certificate and swaps it into the server."""
        state = self.settings.state_dir
        if self._key is None:
            self._key = await asyncio.to_thread(tls.load_or_create_key, state)
        csr = await asyncio.to_thread(tls.build_csr, self._key, self.settings.endpoint_host)
        body: dict[str, Any] = {
            "join_token": self.settings.join_token,
            "endpoint": self.settings.endpoint,
            "region": self.settings.region,
            "capacity_bytes": self.settings.capacity_bytes,
            "csr": csr,
            "idempotency_key": await asyncio.to_thread(_idempotency_key, state),
        }
        if self.settings.lat is not None and self.settings.lng is not None:
            body["lat"], body["lng"] = self.settings.lat, self.settings.lng
        registration = await self.client.register(body)
        cert_path = await asyncio.to_thread(
            tls.save_certificate,
            state,
            registration.certificate,
            registration.certificate_chain,
            registration.root_certificate,
        )
        if self.ssl_context is None:
            self.ssl_context = tls.server_context(cert_path, state / tls.KEY_FILE)
        else:
            # Same context object: new handshakes get the new certificate, open
            # connections are untouched.
            self.ssl_context.load_cert_chain(str(cert_path), str(state / tls.KEY_FILE))
        self.keys.update(registration.share_public_keys)
        self.registration = registration
        return registration

    async def register_until_answered(self, stop: asyncio.Event) -> Registration | None:
        """Retry registration with bounded, jittered backoff until it answers or we stop."""
        delay = 0.5
        while not stop.is_set():
            try:
                return await self.register()
            except (Unavailable, Conflict) as exc:
                # Conflict: a concurrent registration with our idempotency key.
                log.warning("control plane not ready (%s); retrying in %.1fs", exc.message, delay)
            except FsnodeError as exc:
                raise FatalStartError(f"registration refused: {exc.code}: {exc.message}") from exc
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay * random.uniform(0.8, 1.2))
            delay = min(10.0, delay * 2)
        return None

    async def serve(self, stop: asyncio.Event) -> int:
        registration = await self.register_until_answered(stop)
        if registration is None or self.ssl_context is None:
            return 0
        await self.cache.open()
        context = EdgeContext(
            cache=self.cache,
            manifests=self.manifests,
            keys=self.keys,
            metrics=self.metrics,
            node_id=registration.node_id,
            sendfile=self.settings.sendfile,
        )
        runner = web.AppRunner(
            build_app(context),
            shutdown_timeout=self.settings.shutdown_grace_seconds,
            access_log=None,
        )
        self._runner = runner
        await runner.setup()
        await web.TCPSite(
            runner, self.settings.host, self.settings.port, ssl_context=self.ssl_context
        ).start()
        if self.settings.http_port is not None:
            await web.TCPSite(runner, self.settings.host, self.settings.http_port).start()
            log.info("plain HTTP on %s:%d", self.settings.host, self.settings.http_port)
        heartbeat = HeartbeatLoop(
            client=self.client,
            cache=self.cache,
            manifests=self.manifests,
            keys=self.keys,
            metrics=self.metrics,
            capacity_bytes=self.settings.capacity_bytes,
            interval=registration.heartbeat_interval,
            reregister=self._reregister,
        )
        heartbeat_task = asyncio.create_task(heartbeat.run(stop), name="heartbeat")
        print(
            f"edge ready node_id={registration.node_id} url={self.settings.endpoint}",
            file=sys.stderr,
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            log.info("stopping: no new connections, finishing open responses")
            stop.set()
            await runner.cleanup()  # closes listeners, then waits for handlers
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat_task
            await self.cache.close()
            await self.client.close()
        return 0

    async def _reregister(self) -> None:
        registration = await self.register()
        log.info("registered again node_id=%s", registration.node_id)


def _idempotency_key(state_dir: Path) -> str:
    # Stable across restarts, so a retried or repeated registration is one node.
    path = state_dir / IDEMPOTENCY_FILE
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = uuid.uuid4().hex
    tls.write_private(path, value.encode())
    return value


async def run(settings: EdgeSettings) -> int:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    node = EdgeNode(settings)
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
    logging.basicConfig(
        level=getattr(logging, settings.log_level, logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return asyncio.run(run(settings))
