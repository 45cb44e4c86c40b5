"""Helpers for the edge's integration tests: a moto S3 server, a throwaway CA that
signs the edge's own CSR, share signing, and the real edge app on a real HTTPS port
in a background thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fsnode_core.errors import NotFound
from fsnode_core.ids import new_id
from fsnode_core.signing import SharePolicy, ShareSigner, private_key_from_seed, public_key_pem
from moto.server import ThreadedMotoServer

from edge_node import tls
from edge_node.cache import ChunkCache
from edge_node.manifests import ChunkInfo, Manifest, ManifestStore
from edge_node.origin import OriginFetcher
from edge_node.server import EdgeContext, ShareKeys, build_app

SEED = "edge-integration-test-seed-0123456789abcdef"
KID = "k1"


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

    def sign_csr(self, csr_pem: str) -> str:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
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


def signer() -> ShareSigner:
    return ShareSigner(KID, private_key_from_seed(SEED))


def share_public_keys() -> dict[str, str]:
    return {KID: public_key_pem(private_key_from_seed(SEED))}


def share_query(file_id: str, version: str, ttl: int = 3600) -> dict[str, str]:
    return signer().sign(SharePolicy(file_id, version, int(time.time()) + ttl))


def put_file(bucket: str, data: bytes, chunk_size: int, file_id: str | None = None) -> Manifest:
    """Store ``data`` in S3 and return its manifest (as the control plane would)."""
    file_id = file_id or new_id()
    key = f"files/{file_id}/1"
    s3 = boto3.client("s3")
    answer = s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="video/mp4")
    chunks = tuple(
        ChunkInfo(
            index=i,
            offset=off,
            length=len(data[off : off + chunk_size]),
            sha256=hashlib.sha256(data[off : off + chunk_size]).hexdigest(),
        )
        for i, off in enumerate(range(0, len(data), chunk_size))
    )
    return Manifest(
        file_id=file_id,
        version="1",
        size=len(data),
        content_type="video/mp4",
        etag=str(answer["ETag"]),
        last_modified=1_700_000_000,
        chunk_size=chunk_size,
        bucket=bucket,
        key=key,
        status="ready",
        chunks=chunks,
    )


@dataclass
class StaticManifestSource:
    """The manifest interface the control-plane client implements, from a dict."""

    manifests: dict[str, Manifest] = field(default_factory=dict)
    calls: int = 0

    async def fetch_manifest(self, file_id: str) -> Manifest:
        self.calls += 1
        try:
            return self.manifests[file_id]
        except KeyError:
            raise NotFound("no such file", file_id=file_id) from None


class CountingOrigin:
    """Wraps the real S3 fetcher and counts reads per (key, offset)."""

    def __init__(self, fetcher: OriginFetcher) -> None:
        self.fetcher = fetcher
        self.reads: Counter[tuple[str, int]] = Counter()
        self.lock = threading.Lock()

    async def __call__(self, manifest: Manifest, chunk: ChunkInfo) -> bytes:
        with self.lock:
            self.reads[(manifest.key, chunk.offset)] += 1
        return await self.fetcher.fetch(manifest.bucket, manifest.key, chunk.offset, chunk.length)


class EdgeServer:
    """The real edge app over real HTTPS, on its own event loop in a thread."""

    def __init__(self, state_dir: Path, ca: ThrowawayCA, source: StaticManifestSource) -> None:
        self.state_dir = state_dir
        key = tls.load_or_create_key(state_dir)
        cert = ca.sign_csr(tls.build_csr(key, "127.0.0.1"))
        cert_path = tls.save_certificate(state_dir, cert, "", ca.pem)
        self.ssl_context = tls.server_context(cert_path, state_dir / tls.KEY_FILE)
        self.ca_file = state_dir / tls.ROOT_FILE
        self.origin = CountingOrigin(OriginFetcher())
        self.source = source
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.http_port = 0
        self.context: EdgeContext | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def plain_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def start(self) -> None:
        self._thread.start()
        self.call(self._start())

    async def _start(self) -> None:
        cache = ChunkCache(self.state_dir / "cache", 64 * 1024 * 1024, self.origin)
        await cache.open()
        self.context = EdgeContext(
            cache=cache,
            manifests=ManifestStore(self.source, self.state_dir),
            keys=ShareKeys(share_public_keys()),
            node_id="test-node",
        )
        self._runner = web.AppRunner(build_app(self.context), shutdown_timeout=2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        # The plain-HTTP listener (FSNODE_EDGE_HTTP_PORT): the sendfile path.
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.http_port = int(self._runner.addresses[1][1])

    def stop(self) -> None:
        if self._runner is not None:
            self.call(self._runner.cleanup())
        if self.context is not None:
            self.call(self.context.cache.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def client_ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))
