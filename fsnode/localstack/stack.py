"""Bring the local stack up and down: moto, the control plane and N edge nodes."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import sys
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fsnode_core.chunks import DEFAULT_CHUNK_SIZE

from fsnode.localstack import processes, role_credentials
from fsnode.localstack.errors import StackError
from fsnode.localstack.resources import (
    LOCAL_CREDENTIALS,
    ResourceBuilder,
    StackResources,
    control_plane_settings,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = REPO_ROOT / "functions"
STACK_FILE = "stack.json"
# The local edges' endpoints: the only addresses the local CA issues node certificates for.
NODE_NAMESPACE = "127.0.0.0/8"
_READY = re.compile(r"edge ready node_id=(\S+) url=(\S+)")


@dataclass(frozen=True, slots=True)
class StackOptions:
    """How to run one local stack."""

    state_dir: Path
    nodes: int = 3
    region: str = "us-east-1"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    cache_max_bytes: int = 2 * 1024**3
    heartbeat_interval: int = 5
    heartbeat_timeout: int = 30
    start_timeout: float = 90.0
    # None runs scheduled functions (prune) on their own rate, as EventBridge would.
    schedule_seconds: float | None = None
    # Where the edges (only they) reach S3, e.g. a fault-injecting proxy in front of moto;
    # None: moto itself, like every other process.
    origin_url: str | None = None
    # Extra settings (PROTOCOL.md names them) for the control plane (its routes and the
    # state machines' Lambdas), and for one edge by process name (a fault on edge-3).
    control_plane_env: dict[str, str] = field(default_factory=dict)
    edge_env_by_name: dict[str, dict[str, str]] = field(default_factory=dict)
    # Public names (issue 19): edges get NODE.edges.DOMAIN in moto's Route 53 and a
    # wildcard certificate from the local public issuer; None: endpoints only.
    domain: str | None = None


@dataclass(slots=True)
class EdgeInfo:
    url: str
    node_id: str
    pid: int
    state_dir: str


@dataclass(slots=True)
class StackInfo:
    """What ``stack.json`` holds: enough for clients, tests and ``local down``."""

    api: str
    api_key: str
    ca_cert: str
    aws_endpoint: str
    region: str
    bucket: str
    state_dir: str
    edges: list[EdgeInfo] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    # With --domain: the edges' zone and the root of the local public issuer.
    edge_domain: str | None = None
    public_ca_cert: str | None = None

    def save(self) -> Path:
        path = Path(self.state_dir) / STACK_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, state_dir: Path) -> StackInfo:
        data = json.loads((state_dir / STACK_FILE).read_text())
        data["edges"] = [EdgeInfo(**edge) for edge in data.get("edges", [])]
        return cls(**data)

    def pids(self) -> list[int]:
        return [int(p["pid"]) for p in self.processes]


def with_credentials(env: dict[str, str], credentials: dict[str, str]) -> dict[str, str]:
    """``env`` signing as a role: its assumed credentials in the standard variables."""
    return {
        **env,
        "AWS_ACCESS_KEY_ID": credentials["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": credentials["secret_access_key"],
        "AWS_SESSION_TOKEN": credentials["session_token"],
    }


def aws_env(endpoint: str, region: str) -> dict[str, str]:
    """Environment that points boto3 at the moto server with throwaway credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_DEFAULT_REGION=region,
        AWS_REGION=region,
        AWS_ACCESS_KEY_ID=LOCAL_CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=LOCAL_CREDENTIALS["aws_secret_access_key"],
        PYTHONUNBUFFERED="1",
    )
    return env


class LocalStack:
    """Starts every process of one stack; the caller decides how long it lives."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.state_dir = options.state_dir.resolve()
        self.children: list[processes.Child] = []

    def up(self) -> StackInfo:
        if (self.state_dir / STACK_FILE).exists():
            existing = StackInfo.load(self.state_dir)
            if any(processes.is_alive(pid) for pid in existing.pids()):
                raise StackError(f"a stack is already running from {self.state_dir}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> list[int]:
        return processes.stop([child.pid for child in self.children])

    def _start(self) -> StackInfo:
        opts = self.options
        logs = self.state_dir / "logs"
        aws_port, api_port = processes.free_port(), processes.free_port()
        endpoint = f"http://127.0.0.1:{aws_port}"
        api_url = f"http://127.0.0.1:{api_port}"
        base_env = aws_env(endpoint, opts.region)
        functions = ["--functions-dir", str(FUNCTIONS_DIR)]

        aws = self._spawn(
            "aws",
            ["-m", "fsnode.localstack.aws_server", "--port", str(aws_port), *functions],
            base_env,
            logs,
        )
        processes.wait_for_log_line(aws, "aws ready", opts.start_timeout)

        settings = {
            "FSNODE_PUBLIC_URL": api_url,
            "FSNODE_CHUNK_SIZE": str(opts.chunk_size),
            "FSNODE_HEARTBEAT_INTERVAL": str(opts.heartbeat_interval),
            "FSNODE_HEARTBEAT_TIMEOUT": str(opts.heartbeat_timeout),
            "POWERTOOLS_SERVICE_NAME": "fsnode",
            "POWERTOOLS_METRICS_NAMESPACE": "fsnode",
            # No X-Ray daemon on one machine.
            "POWERTOOLS_TRACE_DISABLED": "true",
            "FSNODE_NODE_NAMESPACE": NODE_NAMESPACE,
            **opts.control_plane_env,
        }
        builder = ResourceBuilder(endpoint, opts.region, FUNCTIONS_DIR)
        resources = builder.build(settings, opts.domain)
        # From here on every AWS call must be allowed by its caller's role.
        builder.enforce_iam()
        ca_cert = self.state_dir / "ca.pem"
        ca_cert.write_text(resources.ca_cert_pem)
        public_ca = self.state_dir / "public-ca.pem"
        if resources.public_issuer_pem:
            public_ca.write_text(resources.public_issuer_pem)

        # The API server runs as the API handler's role; the authorizer and prune, which
        # it runs too, sign as their own (role_credentials).
        in_api_server = {
            name: value
            for name, value in resources.credentials.items()
            if name not in ("api_handler", "edge")
        }
        api_env = {
            **with_credentials(base_env, resources.credentials["api_handler"]),
            **settings,
            **control_plane_settings(resources),
            role_credentials.ROLES_ENV: json.dumps(in_api_server),
        }
        api = self._spawn(
            "api",
            [
                "-m",
                "fsnode.localstack.api_server",
                "--port",
                str(api_port),
                *functions,
                *(
                    ["--schedule-seconds", str(opts.schedule_seconds)]
                    if opts.schedule_seconds
                    else []
                ),
            ],
            api_env,
            logs,
        )
        processes.wait_for_log_line(api, "api ready", opts.start_timeout)

        info = StackInfo(
            api=api_url,
            api_key=resources.api_key,
            ca_cert=str(ca_cert),
            aws_endpoint=endpoint,
            region=opts.region,
            bucket=resources.bucket,
            state_dir=str(self.state_dir),
            edge_domain=resources.public_names.get("FSNODE_EDGE_DOMAIN"),
            public_ca_cert=str(public_ca) if resources.public_issuer_pem else None,
        )
        edges = [self._spawn_edge(i, base_env, api_url, resources, logs) for i in range(opts.nodes)]
        for child, edge_dir in edges:
            line = processes.wait_for_log_line(child, "edge ready", opts.start_timeout)
            match = _READY.search(line)
            if match is None:
                raise StackError(f"cannot read the edge's ready line: {line!r}")
            node_id, url = match.groups()
            _wait_healthy(url, ca_cert, opts.start_timeout)
            info.edges.append(EdgeInfo(url=url, node_id=node_id, pid=child.pid, state_dir=edge_dir))
        info.processes = [{"name": c.name, "pid": c.pid, "log": str(c.log)} for c in self.children]
        info.save()
        return info

    def _spawn_edge(
        self,
        index: int,
        base_env: dict[str, str],
        api_url: str,
        resources: StackResources,
        logs: Path,
    ) -> tuple[processes.Child, str]:
        opts = self.options
        edge_dir = self.state_dir / "edges" / f"edge-{index + 1}"
        env = {
            **with_credentials(base_env, resources.credentials["edge"]),
            # STS is always moto's, even with the edges' S3 behind a fault proxy: their
            # registration is a GetCallerIdentity request the control plane sends there.
            "AWS_ENDPOINT_URL_STS": base_env["AWS_ENDPOINT_URL"],
            "FSNODE_API_URL": api_url,
            "FSNODE_JOIN_TOKEN": resources.join_token,
            "FSNODE_EDGE_HOST": "127.0.0.1",
            "FSNODE_EDGE_PORT": str(processes.free_port()),
            "FSNODE_STATE_DIR": str(edge_dir),
            "FSNODE_CACHE_MAX_BYTES": str(opts.cache_max_bytes),
            "FSNODE_CAPACITY_BYTES": str(opts.cache_max_bytes),
            "FSNODE_REGION": "local",
            # One worker per edge: a local stack runs several edges on one machine.
            "FSNODE_WORKERS": "1",
            **opts.edge_env_by_name.get(f"edge-{index + 1}", {}),
        }
        if opts.origin_url:
            env["AWS_ENDPOINT_URL"] = opts.origin_url
        child = self._spawn(f"edge-{index + 1}", ["-m", "edge_node"], env, logs)
        return child, str(edge_dir)

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str], logs: Path
    ) -> processes.Child:
        argv = [sys.executable, *args]
        _save_launch(self.state_dir, name, argv, env)
        child = processes.spawn(name, argv, env, logs / f"{name}.log")
        self.children.append(child)
        return child


_READY_MARKERS = {"aws": "aws ready", "api": "api ready"}


def _save_launch(state_dir: Path, name: str, argv: list[str], env: dict[str, str]) -> None:
    # The environment holds the join token: readable by this user only.
    launch = state_dir / "launch"
    launch.mkdir(mode=0o700, exist_ok=True)
    path = launch / f"{name}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"argv": argv, "env": env}, handle)


def kill(state_dir: Path, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
    """Send ``sig`` to one process of a stack (a fault, for tests); returns its pid."""
    info = StackInfo.load(state_dir)
    pid = _pid_of(info, name)
    os.killpg(pid, sig)
    return pid


def restart(state_dir: Path, name: str, timeout: float = 90.0) -> int:
    """Stop one process of a stack if it runs, start it again as it was; returns the new pid.

    An edge keeps its state folder, so it comes back with its key, identity and cache.
    """
    info = StackInfo.load(state_dir)
    processes.stop([_pid_of(info, name)])
    spec = json.loads((state_dir / "launch" / f"{name}.json").read_text())
    log = Path(next(p["log"] for p in info.processes if p["name"] == name))
    child = processes.spawn(name, spec["argv"], spec["env"], log)
    marker = _READY_MARKERS.get(name, "edge ready")
    line = processes.wait_for_log_line(child, marker, timeout)
    for entry in info.processes:
        if entry["name"] == name:
            entry["pid"] = child.pid
    for index, edge in enumerate(info.edges):
        if name == f"edge-{index + 1}":
            edge.pid = child.pid
            match = _READY.search(line)
            if match is not None:
                edge.node_id, edge.url = match.groups()
            _wait_healthy(edge.url, Path(info.ca_cert), timeout)
    info.save()
    return child.pid


def _pid_of(info: StackInfo, name: str) -> int:
    for entry in info.processes:
        if entry["name"] == name:
            return int(entry["pid"])
    names = ", ".join(p["name"] for p in info.processes)
    raise StackError(f"no process {name!r} in this stack (it has {names})")


def down(state_dir: Path, grace: float = 15.0) -> list[int]:
    """Stop every process a stack recorded, and everything each started; returns once all
    have exited (SIGKILL after ``grace`` seconds), or the pids whose groups would not die."""
    info = StackInfo.load(state_dir)
    return processes.stop(info.pids(), grace)


def _wait_healthy(url: str, ca_cert: Path, timeout: float) -> None:
    context = ssl.create_default_context(cafile=str(ca_cert))

    def healthy() -> bool:
        with urllib.request.urlopen(f"{url}/healthz", context=context, timeout=2) as response:
            return bool(response.status == 200)

    processes.wait_until(healthy, timeout, f"edge {url} did not become healthy")
