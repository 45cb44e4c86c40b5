"""Helpers for the edge's integration tests: a moto S3 server, a throwaway CA that
signs the edge's own CSR, and the real edge app on a real HTTPS port in a background
thread (``edge_on_moto`` for both). What the control plane publishes is in
``edge_publishing``; a misbehaving origin in ``origin_proxy``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import boto3
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from moto.server import ThreadedMotoServer

from edge_node import tls
from edge_node.cache import CacheConfig, ChunkCache
from edge_node.chunk_hashes import ChunkHashRecorder
from edge_node.context import EdgeContext
from edge_node.early_reads import EarlyReads, held_on_disk
from edge_node.folders import FolderIndex
from edge_node.limits import ClientLimits, ConnectionGuard
from edge_node.listener import BoundedSite
from edge_node.manifest import ChunkInfo
from edge_node.manifests import ManifestStore
from edge_node.metrics import EdgeMetrics
from edge_node.origin import OriginConfig, OriginFetcher
from edge_node.prefetch import PlaylistPrefetch, PrefetchConfig
from edge_node.published_reader import PublishedReader
from edge_node.readahead import ReadAhead
from edge_node.server import build_app
from edge_node.shares import ShareKeys
from tests.helpers import LoopThread
from tests.integration.edge_publishing import share_public_keys


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_s3() -> Iterator[str]:
    """A real moto server on a free port, with AWS_ENDPOINT_URL pointing at it."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


class ThrowawayCA:
    """A throwaway root CA that signs CSRs the way ACM Private CA does for edges."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fsnode test root")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign_csr(
        self,
        csr_pem: str,
        lifetime: dt.timedelta = dt.timedelta(days=1),
        backdate: dt.timedelta = dt.timedelta(minutes=5),
    ) -> str:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - backdate)
            .not_valid_after(now + lifetime)
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()


class CountingOrigin:
    """Wraps the real S3 fetcher and counts ranged reads per (key, offset) and range."""

    def __init__(self, fetcher: OriginFetcher) -> None:
        self.fetcher = fetcher
        self.reads: Counter[tuple[str, int]] = Counter()
        self.ranges: list[tuple[str, int, int]] = []
        self.lock = threading.Lock()

    def reads_within(self, key: str, chunk: ChunkInfo) -> int:
        """Ranged reads that started inside ``chunk``."""
        with self.lock:
            return sum(
                1
                for k, offset, _length in self.ranges
                if k == key and chunk.offset <= offset < chunk.offset + chunk.length
            )

    async def read_into(
        self, bucket: str, key: str, offset: int, view: memoryview, *rest: Any, **pins: Any
    ) -> None:
        """Count the read, then make it (progress and pins passed on as given)."""
        with self.lock:
            self.reads[(key, offset)] += 1
            self.ranges.append((key, offset, len(view)))
        await self.fetcher.read_into(bucket, key, offset, view, *rest, **pins)


class EdgeServer(LoopThread):
    """The real edge app over real HTTPS, on its own event loop in a thread."""

    def __init__(
        self,
        state_dir: Path,
        ca: ThrowawayCA,
        bucket: str,
        *,
        cache_config: CacheConfig | None = None,
        origin_config: OriginConfig | None = None,
        origin_endpoint: str | None = None,
        readahead_chunks: int = 2,
        trusted_proxy_hops: int = 0,
        manifest_max_age: float = 30.0,
        prefetch: PrefetchConfig | None = None,
        early_reads: bool = False,
        client_limits: ClientLimits | None = None,
    ) -> None:
        self.prefetch_config = prefetch
        self.state_dir = state_dir
        self.bucket = bucket
        self.manifest_max_age = manifest_max_age
        self.client_limits = client_limits or ClientLimits()
        self.connections: ConnectionGuard | None = None
        self.trusted_proxy_hops = trusted_proxy_hops
        self.cache_config = cache_config or CacheConfig(max_bytes=64 * 1024 * 1024)
        self.readahead_chunks = readahead_chunks
        key = tls.load_or_create_key(state_dir)
        cert = ca.sign_csr(tls.build_csr(key, "127.0.0.1"))
        cert_path = tls.save_certificate(state_dir, cert, "", ca.pem)
        self.ssl_context = tls.server_context(cert_path, state_dir / tls.KEY_FILE)
        self.ca_file = state_dir / tls.ROOT_FILE
        self.metrics = EdgeMetrics()
        # ``origin_endpoint``: through a test proxy (throttling or misbehaving) in front
        # of moto.
        self.fetcher = OriginFetcher(
            origin_config, endpoint_url=origin_endpoint, on_bytes=self.metrics.add_origin_bytes
        )
        # Published objects straight from moto: origin faults a test injects through a
        # proxy are meant for the data reads.
        self.meta_fetcher = OriginFetcher(origin_config)
        self.published = PublishedReader(self.meta_fetcher, bucket)
        # Off unless asked for: tests that count origin GETs expect only the fills'.
        self.early = (
            EarlyReads(
                self.fetcher,
                self.published,
                self.cache_config.first_part_bytes,
                chunk_size=64 * 1024,
            )
            if early_reads
            else None
        )
        self.origin = CountingOrigin(self.early or self.fetcher)  # type: ignore[arg-type]
        super().__init__()
        self.port = 0
        self.http_port = 0
        self.context: EdgeContext | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def plain_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def _start(self) -> None:
        manifests = ManifestStore(self.published, self.manifest_max_age)
        folders = FolderIndex(self.published, self.manifest_max_age)
        cache = ChunkCache(
            self.state_dir / "cache",
            self.origin,
            self.cache_config,
            ChunkHashRecorder(manifests),
        )
        await cache.open()
        if self.early is not None:
            self.early.held = held_on_disk(cache)
        self.context = EdgeContext(
            cache=cache,
            manifests=manifests,
            keys=ShareKeys(share_public_keys()),
            folders=folders,
            metrics=self.metrics,
            node_id="test-node",
            readahead=ReadAhead(self.readahead_chunks),
            origin=self.fetcher,
            trusted_proxy_hops=self.trusted_proxy_hops,
            prefetch=PlaylistPrefetch(cache, manifests, folders, self.prefetch_config, self.early),
            early=self.early,
            published=self.published,
        )
        # No access log, as main.py: a request line carries its share's signature.
        self._runner = web.AppRunner(build_app(self.context), shutdown_timeout=2, access_log=None)
        await self._runner.setup()
        # The listeners main.py opens: the client limits bound every connection.
        self.connections = ConnectionGuard(self.client_limits)
        self.metrics.connections = self.connections
        site = BoundedSite(
            self._runner, self.connections, "127.0.0.1", 0, ssl_context=self.ssl_context
        )
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        # The plain-HTTP listener (FSNODE_EDGE_HTTP_PORT): the sendfile path.
        await BoundedSite(self._runner, self.connections, "127.0.0.1", 0).start()
        self.http_port = int(self._runner.addresses[1][1])

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.connections is not None:
            await self.connections.close()
        if self.context is not None:
            if self.context.prefetch is not None:
                await self.context.prefetch.close()
            await self.context.manifests.close()
            await self.context.cache.close()
        await self.fetcher.close()
        await self.meta_fetcher.close()

    def client_ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def __enter__(self) -> EdgeServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def edge_on_moto(
    tmp_path_factory: pytest.TempPathFactory, bucket: str, **options: Any
) -> Iterator[EdgeServer]:
    """A moto S3 server holding an empty ``bucket``, and the edge over it (``options``
    as ``EdgeServer`` takes them), started, stopped on the way out."""
    with moto_s3():
        boto3.client("s3").create_bucket(Bucket=bucket)
        state_dir = tmp_path_factory.mktemp("edge")
        with EdgeServer(state_dir, ThrowawayCA(), bucket, **options) as server:
            yield server


@contextmanager
def counted_edge(
    tmp_path_factory: pytest.TempPathFactory, bucket: str, manifest_max_age: float
) -> Iterator[EdgeServer]:
    """``edge_on_moto`` for tests that count the edge's S3 reads: heads trusted for
    ``manifest_max_age`` seconds, and no read-ahead or prefetch reads of its own."""
    with edge_on_moto(
        tmp_path_factory,
        bucket,
        manifest_max_age=manifest_max_age,
        readahead_chunks=0,
        cache_config=CacheConfig(max_bytes=64 * 1024 * 1024, max_prefetch_fills=0),
    ) as server:
        yield server


def concurrent_gets(
    edge: EdgeServer, url: str, query: dict[str, str], headers: dict[str, str], count: int
) -> list[tuple[int, bytes]]:
    """``count`` GETs of ``url`` sent at once over HTTPS: each one's status and body."""

    async def fetch_all() -> list[tuple[int, bytes]]:
        connector = aiohttp.TCPConnector(ssl=edge.client_ssl(), limit=0)
        async with aiohttp.ClientSession(connector=connector) as client:

            async def one() -> tuple[int, bytes]:
                async with client.get(url, params=query, headers=headers) as answer:
                    return answer.status, await answer.read()

            return await asyncio.gather(*(one() for _ in range(count)))

    return asyncio.run(fetch_all())
