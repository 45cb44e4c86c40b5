"""Helpers for the edge's integration tests: a moto S3 server, a throwaway CA that
signs the edge's own CSR, share signing, files published to S3 as the control plane
publishes them, and the real edge app on a real HTTPS port in a background thread.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fsnode_core.folder_tokens import mint_folder_token
from fsnode_core.ids import new_id
from fsnode_core.paths import url_path
from fsnode_core.published import (
    SOURCE_IMPORT,
    SOURCE_UPLOAD,
    STATUS_DELETED,
    STATUS_READY,
    Head,
    Origin,
    VersionManifest,
    chunks_digest,
    data_key,
    head_key,
    join_digests,
    parse_tree_key,
    publish_seq,
    tree_key,
    tree_path_prefix,
    version_manifest_key,
)
from fsnode_core.signing import SharePolicy, ShareSigner, private_key_from_seed, public_key_pem
from moto.server import ThreadedMotoServer

from edge_node import tls
from edge_node.cache import CacheConfig, ChunkCache
from edge_node.chunk_hashes import ChunkHashRecorder
from edge_node.early_reads import EarlyReads, held_on_disk
from edge_node.folders import FolderIndex
from edge_node.limits import BoundedSite, ClientLimits, ConnectionGuard
from edge_node.manifests import ChunkInfo, Manifest, ManifestStore
from edge_node.metrics import EdgeMetrics
from edge_node.origin import OriginConfig, OriginFetcher
from edge_node.prefetch import PlaylistPrefetch, PrefetchConfig
from edge_node.published_reader import PublishedReader
from edge_node.server import EdgeContext, ReadAhead, ShareKeys, build_app

SEED = "edge-integration-test-seed-0123456789abcdef"
KID = "k1"
VERSION = "0" * 31 + "1"  # put_file's version (a version is an id: a pin must be one)


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


def signer() -> ShareSigner:
    return ShareSigner(KID, private_key_from_seed(SEED))


def share_public_keys() -> dict[str, str]:
    return {KID: public_key_pem(private_key_from_seed(SEED))}


def share_query(file_id: str, version: str | None, ttl: int = 3600) -> dict[str, str]:
    """A file share's query as the control plane's redirect sends it: the signed fields
    and, with ``version``, the unsigned pin ``v``."""
    query = signer().sign(SharePolicy(file_id, int(time.time()) + ttl))
    return {**query, "v": version} if version is not None else query


def folder_token(prefix: str, ttl: int = 3600, **policy: Any) -> str:
    """A folder share's token for ``prefix`` (``not_before``, ``ip`` as the signer takes)."""
    return mint_folder_token(signer(), prefix, int(time.time()) + ttl, **policy)


def folder_url(base: str, token: str, path: str) -> str:
    """The URL of the file at ``path`` (the folder's prefix included) under ``token``."""
    return f"{base}/t/{token}/{url_path(path)}"


def put_file(
    bucket: str,
    data: bytes,
    chunk_size: int,
    file_id: str | None = None,
    *,
    path: str | None = None,
    imported: bool = False,
    version: str = VERSION,
    content_type: str = "video/mp4",
    expires_at: int | None = None,
) -> Manifest:
    """Store ``data`` in S3 and publish it as the control plane does (version manifest,
    head, tree key: docs/PROTOCOL.md "Published S3 objects"); its manifest as the edge
    sees it. ``imported``: as an import starts, chunk hashes unknown and reads pinned to
    the object's ETag."""
    file_id = file_id or new_id()
    path = path or f"test/{file_id}.mp4"
    key = f"imports/{file_id}.bin" if imported else data_key(file_id, version)
    s3 = boto3.client("s3")
    answer = s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    etag = str(answer["ETag"]).strip('"')
    digests = [
        hashlib.sha256(data[off : off + chunk_size]).hexdigest()
        for off in range(0, len(data), chunk_size)
    ]
    published = VersionManifest(
        file_id=file_id,
        version=version,
        path=path,
        size=len(data),
        chunk_size=chunk_size,
        content_type=content_type,
        etag=etag,
        last_modified=1_700_000_000,
        source=SOURCE_IMPORT if imported else SOURCE_UPLOAD,
        origin=Origin(bucket, key, None, etag if imported else None),
        chunk_sha256=None if imported else join_digests(digests),
        chunks_sha256=None if imported else chunks_digest(digests),
    )
    publish(bucket, published, expires_at=expires_at)
    return Manifest.from_published(published)


def publish(bucket: str, published: VersionManifest, *, expires_at: int | None = None) -> None:
    """Write a version manifest, then make it current: head and tree key (the old tree
    keys of its path go), as the control plane's publisher does."""
    s3 = boto3.client("s3")
    s3.put_object(
        Bucket=bucket,
        Key=version_manifest_key(published.file_id, published.version),
        Body=published.to_json(),
    )
    seq = publish_seq()
    head = Head(
        file_id=published.file_id,
        path=published.path,
        status=STATUS_READY,
        version=published.version,
        seq=seq,
        expires_at=expires_at,
        updated_at=int(time.time()),
    )
    s3.put_object(Bucket=bucket, Key=head_key(published.file_id), Body=head.to_json())
    s3.put_object(
        Bucket=bucket,
        Key=tree_key(published.path, seq, published.file_id, published.version),
        Body=b"",
    )
    _drop_tree_keys(bucket, published.path, keep=seq)


def delete_file(bucket: str, manifest: Manifest) -> None:
    """Tombstone a file as the control plane does: a deleted head, no tree key (the
    version's manifest and bytes stay for the grace period)."""
    head = Head(
        file_id=manifest.file_id,
        path=manifest.path,
        status=STATUS_DELETED,
        version=None,
        seq=publish_seq(),
        expires_at=None,
        updated_at=int(time.time()),
    )
    boto3.client("s3").put_object(
        Bucket=bucket, Key=head_key(manifest.file_id), Body=head.to_json()
    )
    _drop_tree_keys(bucket, manifest.path, keep=None)


def overwrite(bucket: str, manifest: Manifest, data: bytes, version: str) -> Manifest:
    """A new version of the same file (same id and path) with ``data``."""
    return put_file(
        bucket, data, manifest.chunk_size, manifest.file_id, path=manifest.path, version=version
    )


def write_hashes(bucket: str, manifest: Manifest, digests: list[str]) -> None:
    """The hashing job's result: the version manifest with its chunk hashes."""
    s3 = boto3.client("s3")
    key = version_manifest_key(manifest.file_id, manifest.version)
    published = VersionManifest.from_json(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    hashed = replace(
        published, chunk_sha256=join_digests(digests), chunks_sha256=chunks_digest(digests)
    )
    s3.put_object(Bucket=bucket, Key=key, Body=hashed.to_json())


def _drop_tree_keys(bucket: str, path: str, keep: int | None) -> None:
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=tree_path_prefix(path))
    for item in listed.get("Contents", []):
        entry = parse_tree_key(item["Key"])
        if entry is not None and entry.path == path and entry.seq != keep:
            s3.delete_object(Bucket=bucket, Key=item["Key"])


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
        self,
        bucket: str,
        key: str,
        offset: int,
        view: memoryview,
        progress: Callable[[int], None],
        *,
        version_id: str | None = None,
        etag: str | None = None,
    ) -> None:
        with self.lock:
            self.reads[(key, offset)] += 1
            self.ranges.append((key, offset, len(view)))
        await self.fetcher.read_into(
            bucket, key, offset, view, progress, version_id=version_id, etag=etag
        )


class EdgeServer:
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
            prefetch=PlaylistPrefetch(cache, manifests, folders, self.prefetch_config),
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

    def stop(self) -> None:
        if self._runner is not None:
            self.call(self._runner.cleanup())
        if self.connections is not None:
            self.call(self.connections.close())
        if self.context is not None:
            if self.context.prefetch is not None:
                self.call(self.context.prefetch.close())
            self.call(self.context.manifests.close())
            self.call(self.context.cache.close())
        self.call(self.fetcher.close())
        self.call(self.meta_fetcher.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def client_ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@dataclass
class _Answer:
    """Bytes of the current answer relayed so far, and where to cut it (if at all)."""

    sent: int = 0
    limit: int | None = None


class OriginProxy:
    """A TCP proxy in front of the moto S3 server that can misbehave on cue.

    It reads each request head (GETs carry no body), counts it and records its
    Range, then either forwards it or plays the next queued fault:
    ``"500"`` (an error answer, then close), ``"reset"`` (a TCP reset, no answer),
    ``"stall"`` (never answer), ``"cut"`` (forward, but close after ``cut_after``
    bytes of the answer). ``pause(n)`` holds every connection's answer after its
    first ``n`` bytes until ``release()``: a slow origin, without timing.
    """

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self._upstream = (host, int(port))
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._lock = threading.Lock()
        self._faults: list[str] = []
        self.cut_after = 2000
        self._pause_after: int | None = None
        self._released: asyncio.Event | None = None
        self.ranges: list[tuple[str, int, int]] = []
        self._clients: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)

    async def _start(self) -> None:
        self._released = asyncio.Event()
        self._released.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def fail_next(self, kind: str, count: int = 1) -> None:
        with self._lock:
            self._faults.extend([kind] * count)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.ranges.clear()

    def gets_for(self, key: str) -> list[tuple[int, int]]:
        """(first, last) of every GET of ``key`` seen so far."""
        with self._lock:
            return [(a, b) for k, a, b in self.ranges if k.endswith(key)]

    def pause(self, after_bytes: int) -> None:
        def apply() -> None:
            assert self._released is not None
            self._pause_after = after_bytes
            self._released.clear()

        self.loop.call_soon_threadsafe(apply)

    def release(self) -> None:
        def apply() -> None:
            assert self._released is not None
            self._pause_after = None
            self._released.set()

        self.loop.call_soon_threadsafe(apply)

    def abort_all(self) -> None:
        """Reset every open client connection (an origin that dies mid-answer)."""

        def apply() -> None:
            for writer in list(self._clients):
                writer.transport.abort()

        self.loop.call_soon_threadsafe(apply)

    def _next_fault(self) -> str | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        pump: asyncio.Task[None] | None = None
        answer = _Answer()
        self._clients.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self._record(head)
                fault = self._next_fault()
                if fault == "500":
                    writer.write(
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                    await writer.drain()
                    return
                if fault == "reset":
                    sock = writer.get_extra_info("socket")
                    # SO_LINGER 0: close() sends a RST instead of a clean FIN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
                    writer.transport.abort()
                    return
                if fault == "stall":
                    await reader.read()  # until the client gives up
                    return
                if upstream is None:
                    upstream = await asyncio.open_connection(*self._upstream)
                    pump = asyncio.create_task(self._pump(upstream[0], writer, answer))
                # Answers come one at a time (no pipelining): count from this one's start.
                answer.sent = 0
                answer.limit = self.cut_after if fault == "cut" else None
                upstream[1].write(head)
                await upstream[1].drain()
        finally:
            if pump is not None:
                pump.cancel()
            if upstream is not None:
                upstream[1].close()
            self._clients.discard(writer)
            writer.close()

    async def _pump(
        self, source: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: _Answer
    ) -> None:
        while True:
            data = await source.read(16 * 1024)
            if not data:
                writer.close()
                return
            pause_after = self._pause_after
            if pause_after is not None and answer.sent + len(data) > pause_after:
                head = data[: max(0, pause_after - answer.sent)]
                writer.write(head)
                await writer.drain()
                answer.sent += len(head)
                data = data[len(head) :]
                assert self._released is not None
                await self._released.wait()
            limit = answer.limit
            if limit is not None and answer.sent + len(data) >= limit:
                writer.write(data[: limit - answer.sent])
                await writer.drain()
                writer.transport.abort()
                return
            writer.write(data)
            answer.sent += len(data)
            await writer.drain()

    def _record(self, head: bytes) -> None:
        text = head.decode("latin-1")
        path = text.split(" ", 2)[1] if text.count(" ") >= 2 else ""
        path = path.split("?", 1)[0]
        first, last = -1, -1
        for line in text.split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "range":
                start, _, end = value.strip().removeprefix("bytes=").partition("-")
                first, last = int(start), int(end)
        with self._lock:
            self.ranges.append((path, first, last))
