"""A local stack for the benchmarks, started once per run and shared by the
families that need one (``hits``, ``misses``, ``hls``, ``memory``).

It is the project's ``LocalStack`` with four edges set up for measuring:
- ``direct``: reads its origin straight from the moto server and also listens on
  plain HTTP (``FSNODE_EDGE_HTTP_PORT``), for the hit benchmarks over HTTP; it reaches
  the control plane through a latency proxy (``bench.latency_proxy``) whose delay a
  benchmark can raise (a slow control plane: its reads must not notice);
- ``throttled``: its ``AWS_ENDPOINT_URL`` points at a throttling proxy in front of
  moto, the stand-in for S3's per-connection bandwidth limit;
- ``static``: the same, but the proxy's origin is an nginx serving the objects'
  bytes at their S3 paths (``/BUCKET/KEY``; the presigned query is ignored): a
  cross-check with an origin that is not moto (the local stack's moto reads only
  the requested bytes of a ranged GET, ``fsnode.localstack.s3_ranges``; stock moto
  copies the whole object for each one);
- ``workers2``: like ``direct`` but with two worker processes (``FSNODE_WORKERS=2``).

Replication is off (the control plane gets no state machine ARN), so an edge
holds only what a benchmark reads through it. The environments are set by
overriding ``LocalStack._spawn`` (the one place every child's environment passes
through), so nothing in ``fsnode/`` changes.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsnode_core.published_keys import head_key, version_manifest_key

from bench.common import BenchConfig, Unavailable, at_end
from bench.latency_proxy import LatencyProxy
from bench.throttle_proxy import ProxyProcess, start_proxy_process

DIRECT = "edge-1"
THROTTLED = "edge-2"
STATIC = "edge-3"
# Two workers (FSNODE_WORKERS=2) over one cache, for the rows against nginx with two.
WORKERS2 = "edge-4"
MIB = 1024 * 1024


def origin_rate(config: BenchConfig) -> float:
    """Bytes per second per origin connection behind the throttling proxy."""
    return config.pick(16 * MIB, 8 * MIB, 32 * MIB)


@dataclass(slots=True)
class Edge:
    name: str
    url: str  # https://127.0.0.1:PORT
    node_id: str
    pid: int
    state_dir: Path
    http_url: str | None = None

    def pids(self) -> list[int]:
        """The node agent and its worker processes (``edge_node.workers``)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        found = [self.pid]
        if children.exists():
            found += [int(pid) for pid in children.read_text().split()]
        return found

    def worker_pids(self) -> list[int]:
        return self.pids()[1:]

    @property
    def cert(self) -> Path:
        return self.state_dir / "node.crt"  # edge_node.tls.CERT_FILE

    @property
    def key(self) -> Path:
        return self.state_dir / "node.key"  # edge_node.tls.KEY_FILE


@dataclass(slots=True)
class SharedFile:
    path: Path
    file_id: str
    query: str  # the share query a player gets from the redirect (signed, and the v pin)
    size: int


@dataclass(slots=True)
class BenchStack:
    info: Any  # fsnode.localstack.stack.StackInfo
    client: Any  # fsnode.client.FsnodeClient
    edges: dict[str, Edge]
    proxy: ProxyProcess | None
    workdir: Path
    static_proxy: ProxyProcess | None = None
    static_root: Path | None = None
    api_proxy: LatencyProxy | None = None
    files: dict[str, SharedFile] = field(default_factory=dict)

    @property
    def ca_cert(self) -> Path:
        return Path(self.info.ca_cert)

    @property
    def aws_endpoint(self) -> str:
        return str(self.info.aws_endpoint)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def file_url(self, edge: Edge, shared: SharedFile, *, tls: bool = True) -> str:
        base = edge.url if tls else edge.http_url
        if base is None:
            raise Unavailable(f"{edge.name} has no plain-HTTP listener (FSNODE_EDGE_HTTP_PORT)")
        return f"{base}/f/{shared.file_id}?{shared.query}"

    def upload(self, label: str, size: int) -> SharedFile:
        """A random file of ``size`` bytes, uploaded and shared (once per label)."""
        found = self.files.get(label)
        if found is not None:
            return found
        path = self.workdir / "files" / label
        write_random_file(path, size)
        record = self.client.upload(path)
        share = self.client.share(record["file_id"], 6 * 3600)
        query = _redirect_query(share["share_url"])
        shared = SharedFile(path=path, file_id=record["file_id"], query=query, size=size)
        self.files[label] = shared
        return shared

    def publish_static(self, shared: SharedFile) -> str:
        """Put the file's bytes at its S3 path in the static origin; return the path."""
        if self.static_root is None:
            raise Unavailable("the static origin did not start")
        record = self.client.get_file(shared.file_id)
        path = f"/{record['bucket']}/{record['key']}"
        target = self.static_root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        for folder in [target.parent, *target.parent.parents]:
            if folder == self.static_root.parent:
                break
            folder.chmod(0o755)
        if not target.exists():
            target.hardlink_to(shared.path)
        # The edge reads the file's head and manifest from its origin too.
        s3 = _s3_client(self)
        for key in (
            head_key(shared.file_id),
            version_manifest_key(shared.file_id, record["version"]),
        ):
            meta = self.static_root / record["bucket"] / key
            meta.parent.mkdir(parents=True, exist_ok=True)
            meta.write_bytes(s3.get_object(Bucket=record["bucket"], Key=key)["Body"].read())
            for folder in [meta.parent, *meta.parent.parents]:
                if folder == self.static_root.parent:
                    break
                folder.chmod(0o755)
            meta.chmod(0o644)
        return path

    def read_all(self, url: str, timeout: float = 300) -> int:
        """GET ``url`` to the end (bounded by ``timeout``); returns the byte count."""
        context = self.ssl_context() if url.startswith("https") else None
        total = 0
        with urllib.request.urlopen(url, context=context, timeout=timeout) as answer:
            while block := answer.read(MIB):
                total += len(block)
        return total

    def cache_bytes(self, edge: Edge) -> int:
        """What the edge says its cache holds (``/healthz``)."""
        import json

        with urllib.request.urlopen(
            f"{edge.url}/healthz", context=self.ssl_context(), timeout=10
        ) as answer:
            return int(json.loads(answer.read())["cache_bytes"])

    def warm(self, edge: Edge, shared: SharedFile) -> None:
        """Read the whole file through the edge so every chunk is in its cache."""
        for _ in range(2):  # the second read checks the cached path serves it whole
            got = self.read_all(self.file_url(edge, shared))
            if got != shared.size:
                raise RuntimeError(f"warming {edge.name} read {got} of {shared.size} bytes")


def _redirect_query(share_url: str) -> str:
    """The query of the edge URL the share redirects to (a player follows it: the
    signed fields and the version pin)."""
    import http.client

    parts = urllib.parse.urlsplit(share_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}")
        answer = connection.getresponse()
        answer.read()
        if answer.status != 307:
            raise RuntimeError(f"the share answered {answer.status}, not a redirect")
        return urllib.parse.urlsplit(answer.getheader("Location") or "").query
    finally:
        connection.close()


def _s3_client(stack: BenchStack) -> Any:
    import boto3
    from botocore.config import Config

    from fsnode.localstack.resources import LOCAL_CREDENTIALS

    return boto3.client(
        "s3",
        endpoint_url=stack.aws_endpoint,
        region_name=stack.info.region,
        config=Config(signature_version="s3v4"),
        **LOCAL_CREDENTIALS,
    )


def write_random_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        left = size
        while left > 0:
            block = os.urandom(min(4 * MIB, left))
            handle.write(block)
            left -= len(block)
    # nginx's worker may run as another user: let it read the file and its folders.
    path.chmod(0o644)
    for parent in (path.parent, path.parent.parent):
        parent.chmod(0o755)


def _have_nginx() -> bool:
    # Without nginx the static origin is left out (its diagnostic row is skipped);
    # the moto-backed benchmarks still run.
    from bench.nginx import nginx_binary

    try:
        nginx_binary()
    except Unavailable:
        return False
    return True


_SHARED: dict[str, BenchStack] = {}


def shared_stack(config: BenchConfig) -> BenchStack:
    """The run's stack, started on first use and stopped when the run ends."""
    existing = _SHARED.get("stack")
    if existing is not None:
        return existing
    stack = start_stack(config)
    _SHARED["stack"] = stack
    return stack


def start_stack(config: BenchConfig) -> BenchStack:
    try:
        from fsnode.client import FsnodeClient
        from fsnode.localstack import processes
        from fsnode.localstack.stack import LocalStack, StackOptions
        from fsnode.settings import ClientSettings
    except ImportError as exc:
        raise Unavailable(f"the local stack cannot be imported: {exc}") from exc

    state_dir = Path(tempfile.mkdtemp(prefix="stack-", dir=config.workdir))
    rate = origin_rate(config)
    proxies: dict[str, ProxyProcess] = {}
    http_ports: dict[str, int] = {}
    static_root = config.workdir / "static-origin"
    static_root.mkdir(parents=True, exist_ok=True)
    static_root.chmod(0o755)
    servers: list[Any] = []
    latency: list[LatencyProxy] = []

    class _BenchLocalStack(LocalStack):
        def _spawn(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> Any:
            if name == "api":
                # No replication: it would warm the edges behind the miss benchmarks'
                # back (the hit benchmarks warm their edge themselves).
                env = {k: v for k, v in env.items() if k != "FSNODE_REPLICATE_STATE_MACHINE_ARN"}
            elif name in (DIRECT, WORKERS2):
                http_ports[name] = processes.free_port()
                api = urllib.parse.urlsplit(env["FSNODE_API_URL"])
                api_proxy = LatencyProxy((api.hostname or "127.0.0.1", api.port or 80))
                api_proxy.start()
                latency.append(api_proxy)
                env = {
                    **env,
                    "FSNODE_EDGE_HTTP_PORT": str(http_ports[name]),
                    "FSNODE_API_URL": api_proxy.url,
                    "FSNODE_WORKERS": "2" if name == WORKERS2 else "1",
                }
            elif name == THROTTLED:
                origin = urllib.parse.urlsplit(env["AWS_ENDPOINT_URL"])
                proxy = start_proxy_process(
                    (origin.hostname or "127.0.0.1", origin.port or 80),
                    rate,
                    logs / "throttle-proxy.log",
                )
                proxies[name] = proxy
                env = {**env, "AWS_ENDPOINT_URL": proxy.url}
            elif name == STATIC and _have_nginx():
                from bench.nginx import start_nginx

                origin_server = start_nginx(
                    static_root, None, None, config.workdir / "nginx-static-origin"
                )
                servers.append(origin_server)
                proxy = start_proxy_process(
                    ("127.0.0.1", origin_server.http_port), rate, logs / "throttle-proxy-static.log"
                )
                proxies[name] = proxy
                env = {**env, "AWS_ENDPOINT_URL": proxy.url}
            return super()._spawn(name, args, env, logs)

    local = _BenchLocalStack(
        StackOptions(state_dir=state_dir, nodes=4, cache_max_bytes=4 * 1024**3)
    )

    def stop() -> None:
        local.stop()
        for proxy in proxies.values():
            proxy.stop()
        for server in servers:
            server.stop()
        for api_proxy in latency:
            api_proxy.stop()
        _SHARED.pop("stack", None)

    started = time.monotonic()
    try:
        info = local.up()
    except Exception as exc:
        stop()
        raise Unavailable(f"the local stack did not start: {exc}") from exc
    at_end(stop)
    edges: dict[str, Edge] = {}
    for edge in info.edges:
        name = Path(edge.state_dir).name
        port = http_ports.get(name)
        edges[name] = Edge(
            name=name,
            url=edge.url,
            node_id=edge.node_id,
            pid=edge.pid,
            state_dir=Path(edge.state_dir),
            http_url=f"http://127.0.0.1:{port}" if port else None,
        )
    if not {DIRECT, THROTTLED, STATIC, WORKERS2} <= set(edges):
        raise Unavailable(
            f"the stack started edges {sorted(edges)}, "
            f"not {DIRECT}, {THROTTLED}, {STATIC} and {WORKERS2}"
        )
    client = FsnodeClient(
        ClientSettings(api_url=info.api, api_key=info.api_key, ca_cert=info.ca_cert)
    )
    stack = BenchStack(
        info=info,
        client=client,
        edges=edges,
        proxy=proxies.get(THROTTLED),
        workdir=config.workdir,
        static_proxy=proxies.get(STATIC),
        static_root=static_root if servers else None,
        api_proxy=latency[0] if latency else None,
    )
    print(f"bench: local stack up in {time.monotonic() - started:.1f} s ({state_dir})", flush=True)
    return stack
