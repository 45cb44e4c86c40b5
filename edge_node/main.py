"""Bootstrap: key and CSR, registration (retried), certificate, HTTPS server,
heartbeats, and a graceful stop on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from fsnode_core.errors import (
    IDEMPOTENCY_KEY_REUSED,
    Conflict,
    Forbidden,
    FsnodeError,
    NotFound,
    Unauthorized,
    Unavailable,
)

from edge_node import aws_identity, registration_key, tls
from edge_node.cache import ChunkCache
from edge_node.chunk_hashes import ChunkHashRecorder
from edge_node.control_plane import ControlPlaneClient, Registration
from edge_node.early_reads import EarlyReads, held_on_disk
from edge_node.folders import FolderIndex
from edge_node.heartbeat import HeartbeatLoop
from edge_node.limits import BoundedSite, ConnectionGuard
from edge_node.manifests import ManifestStore
from edge_node.metrics import EdgeMetrics
from edge_node.origin import OriginFetcher
from edge_node.prefetch import PlaylistPrefetch
from edge_node.public_tls import PublicTls
from edge_node.published_reader import PublishedReader
from edge_node.server import EdgeContext, ReadAhead, build_admin_app, build_app
from edge_node.settings import EdgeSettings
from edge_node.shares import ShareKeys

log = logging.getLogger("edge_node")
# How long start-up waits to be placed before it says it is ready anyway (and warns).
PLACED_TIMEOUT_SECONDS = 60.0


class FatalStartError(Exception):
    """Registration was refused for a reason retrying cannot fix (bad token, bad CSR)."""


class EdgeNode:
    """One running edge: owns the server, the cache and the background loops."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.client = ControlPlaneClient(settings.api_url, ca_bundle=settings.ca_bundle)
        self.metrics = EdgeMetrics()
        self.connections = ConnectionGuard(settings.client_limits)
        self.metrics.connections = self.connections
        self.origin = OriginFetcher(
            settings.origin_config(), on_bytes=self.metrics.add_origin_bytes
        )
        # The data plane reads S3 only: heads, manifests and folder listings are the
        # objects the control plane publishes (the bucket comes with registration).
        self.published = PublishedReader(self.origin)
        self.manifests = ManifestStore(self.published, settings.manifest_max_age)
        self.folders = FolderIndex(self.published, settings.manifest_max_age)
        self.early = EarlyReads(self.origin, self.published, settings.origin_first_part_bytes)
        self.cache = ChunkCache(
            settings.state_dir / "cache",
            self.early,
            settings.cache_config(),
            hashes=ChunkHashRecorder(self.manifests),
        )
        self.early.held = held_on_disk(self.cache)
        self.keys = ShareKeys()
        self.registration: Registration | None = None
        self.ssl_context: ssl.SSLContext | None = None
        self._key: Any = None
        self._runner: web.AppRunner | None = None
        self._context: EdgeContext | None = None
        # The idempotency key of the registration in force: the one to rotate away
        # from when the control plane stops accepting that node.
        self._registered_with: str | None = None
        # Registration and renewal both replace the key and certificate files.
        self._identity = asyncio.Lock()
        self._renew_now = asyncio.Event()
        self.renewals = 0
        self.public_tls: PublicTls | None = None

    def request_renewal(self) -> None:
        """Renew the certificate now (SIGHUP), instead of waiting for its due time."""
        self._renew_now.set()

    async def register(self) -> Registration:
        """One registration call; stores the certificate and swaps it into the server.

        It sends the stored idempotency key, so a restart (or a retry whose answer
        was lost) gets the same node back, with its certificate."""
        async with self._identity:
            return await self._register()

    async def reregister(self, rejected: str | None = None) -> Registration:
        """Register as a new node: the control plane no longer accepts node
        ``rejected`` (401/404, or it says dead). See ``_register_anew``."""
        async with self._identity:
            current = self.registration
            if current is not None and rejected is not None and current.node_id != rejected:
                # Already replaced (a refused renewal got there first): another
                # registration now would orphan that new node.
                return current
            return await self._register_anew()

    async def _register_anew(self) -> Registration:
        previous = self.registration.node_id if self.registration else None
        registration = await self._register(replace_rejected=True)
        if self._context is not None:
            self._context.node_id = registration.node_id
        # Work addressed to the old identity (evict a deleted file) never reaches the
        # new one: every cached manifest is checked again before it serves. The chunks
        # stay: they are keyed by file and version and verified, whoever holds them.
        self.manifests.distrust_all()
        log.info("registered again (was %s) node_id=%s", previous, registration.node_id)
        return registration

    async def _register(self, *, replace_rejected: bool = False) -> Registration:
        state = self.settings.state_dir
        if self._key is None:
            self._key = await asyncio.to_thread(tls.load_or_create_key, state)
        key = await asyncio.to_thread(registration_key.current, state)
        if replace_rejected and key == self._registered_with:
            # A replay of this key would hand back the rejected node. A retry after a
            # failed attempt finds the new key already stored and sends it again.
            key = await asyncio.to_thread(registration_key.rotate, state)
        csr = await asyncio.to_thread(tls.build_csr, self._key, self.settings.endpoint_host)
        body: dict[str, Any] = {
            "join_token": self.settings.join_token,
            "endpoint": self.settings.endpoint,
            "region": self.settings.region,
            "capacity_bytes": self.settings.capacity_bytes,
            "csr": csr,
            "idempotency_key": key,
        }
        if self.settings.lat is not None and self.settings.lng is not None:
            body["lat"], body["lng"] = self.settings.lat, self.settings.lng
        identity = await asyncio.to_thread(aws_identity.signed_caller_identity,
                                           self._key.public_key())
        if identity is not None:
            body["aws_identity"] = identity
        registration = await self.client.register(body)
        self._registered_with = key
        cert_path = await asyncio.to_thread(
            tls.save_certificate,
            state,
            registration.certificate,
            registration.certificate_chain,
            registration.root_certificate,
        )
        self._load_certificate(cert_path)
        self.keys.update(registration.share_public_keys)
        self.published.bucket = registration.bucket
        self.early.chunk_size = registration.chunk_size
        self.registration = registration
        return registration

    def _load_certificate(self, cert_path: Path) -> None:
        key_path = self.settings.state_dir / tls.KEY_FILE
        if self.ssl_context is None:
            self.ssl_context = tls.server_context(cert_path, key_path)
        else:
            # Same context object: new handshakes get the new certificate, open
            # connections (and their streams) are untouched.
            self.ssl_context.load_cert_chain(str(cert_path), str(key_path))

    async def renew(self) -> None:
        """A new key and certificate through ``POST /nodes/{id}/renew``, swapped in
        for new handshakes. A control plane that no longer knows the node (or has
        no renew route) gets a registration instead, which also issues a certificate."""
        async with self._identity:
            state = self.settings.state_dir
            key = await asyncio.to_thread(tls.new_key)
            csr = await asyncio.to_thread(tls.build_csr, key, self.settings.endpoint_host)
            try:
                issued = await self.client.renew(csr)
            except (Unauthorized, NotFound, Forbidden) as exc:
                log.warning("renewal refused (%s); registering again", exc.message)
                await self._register_anew()
                self.renewals += 1
                return
            # Key first, then certificate: a crash in between leaves a mismatched
            # pair, and the next start registers again, which fixes it.
            await asyncio.to_thread(tls.save_key, state, key)
            cert_path = await asyncio.to_thread(
                tls.save_certificate,
                state,
                issued.certificate,
                issued.certificate_chain,
                issued.root_certificate,
            )
            self._key = key
            self._load_certificate(cert_path)
            self.renewals += 1
            log.info("certificate renewed; new connections get it")

    async def renew_forever(self, stop: asyncio.Event) -> None:
        """Renew at 2/3 of the certificate's lifetime (or inside the margin); SIGHUP
        renews at once. A failed renewal is retried with backoff until it works."""
        failures = 0
        wanted = False  # a renewal is due (or was asked for) and has not worked yet
        retry_at = 0.0  # loop.time() before which a failed renewal is not retried
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            if self._renew_now.is_set():
                self._renew_now.clear()
                wanted, retry_at = True, 0.0
            if wanted:
                delay = retry_at - loop.time()
            else:
                try:
                    due = await asyncio.to_thread(
                        tls.stored_renewal_time,
                        self.settings.state_dir,
                        self.settings.cert_renew_margin_seconds,
                    )
                except (OSError, ValueError) as exc:
                    log.warning("cannot read the stored certificate (%s); renewing", exc)
                    due = dt.datetime.now(dt.UTC)
                delay = (due - dt.datetime.now(dt.UTC)).total_seconds()
            if delay > 0:
                await _wait_any(stop, self._renew_now, timeout=delay)
                # Look again: a re-registration may have brought a new certificate.
                continue
            wanted = True
            try:
                await self.renew()
            except (FsnodeError, ValueError, OSError) as exc:
                failures += 1
                backoff = min(300.0, 2.0**failures) * random.uniform(0.5, 1.0)
                retry_at = loop.time() + backoff
                log.warning("certificate renewal failed (%s); retrying in %.0fs", exc, backoff)
            else:
                failures, wanted, retry_at = 0, False, 0.0

    async def register_until_answered(self, stop: asyncio.Event) -> Registration | None:
        """Retry registration with bounded, jittered backoff until it answers or we stop."""
        delay = 0.5
        while not stop.is_set():
            try:
                return await self.register()
            except (Unavailable, Conflict) as exc:
                if exc.details.get("reason") == IDEMPOTENCY_KEY_REUSED:
                    # Our key was used with other details (settings changed): only a
                    # new key can succeed.
                    await asyncio.to_thread(registration_key.rotate, self.settings.state_dir)
                # Else Conflict: a concurrent registration with our idempotency key.
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
            folders=self.folders,
            metrics=self.metrics,
            node_id=registration.node_id,
            sendfile=self.settings.sendfile,
            readahead=ReadAhead(self.settings.readahead_chunks),
            origin=self.origin,
            trusted_proxy_hops=self.settings.trusted_proxy_hops,
            early=self.early,
            published=self.published,
            prefetch=PlaylistPrefetch(
                self.cache, self.manifests, self.folders, self.settings.prefetch_config()
            ),
        )
        self._context = context
        admin_port = self.settings.admin_port
        runner = web.AppRunner(
            build_app(context, admin=admin_port is None),
            shutdown_timeout=self.settings.shutdown_grace_seconds,
            access_log=None,
        )
        self._runner = runner
        await runner.setup()
        admin: web.AppRunner | None = None
        if admin_port is not None:
            admin = web.AppRunner(build_admin_app(context), access_log=None)
            await admin.setup()
            await web.TCPSite(admin, self.settings.host, admin_port).start()
            log.info("health and metrics on %s:%d", self.settings.host, admin_port)
        await BoundedSite(
            runner, self.connections, self.settings.host, self.settings.port,
            ssl_context=self.ssl_context,
        ).start()
        if self.settings.http_port is not None:
            await BoundedSite(
                runner, self.connections, self.settings.host, self.settings.http_port
            ).start()
            log.info("plain HTTP on %s:%d", self.settings.host, self.settings.http_port)
        public = PublicTls(self.settings.state_dir, self.client)
        public.install(self.ssl_context)
        self.public_tls = public
        heartbeat = HeartbeatLoop(
            client=self.client,
            cache=self.cache,
            manifests=self.manifests,
            keys=self.keys,
            metrics=self.metrics,
            capacity_bytes=self.settings.capacity_bytes,
            interval=registration.heartbeat_interval,
            reregister=self.reregister,
            on_answer=public.on_heartbeat,
        )
        heartbeat_task = asyncio.create_task(heartbeat.run(stop), name="heartbeat")
        renewal_task = asyncio.create_task(self.renew_forever(stop), name="renewal")
        # Ready once placed: a beat has had the control plane see this certificate at
        # the endpoint (a new node is pending until then).
        await _wait_any(stop, heartbeat.placed, timeout=PLACED_TIMEOUT_SECONDS)
        if not heartbeat.placed.is_set() and not stop.is_set():
            log.warning("not placed yet after %.0fs: is %s reachable from the control plane?",
                        PLACED_TIMEOUT_SECONDS, self.settings.endpoint)
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
            await self.connections.close()
            if admin is not None:
                await admin.cleanup()
            for task in (heartbeat_task, renewal_task):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if context.prefetch is not None:
                await context.prefetch.close()
            await self.manifests.close()
            await self.early.close()
            await self.cache.close()
            await self.origin.close()
            await self.client.close()
        return 0


async def _wait_any(*events: asyncio.Event, timeout: float) -> None:
    """Return when any event is set or ``timeout`` seconds pass."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


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
    logging.basicConfig(
        level=getattr(logging, settings.log_level, logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return asyncio.run(run(settings))
