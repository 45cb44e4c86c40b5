"""Cache hits: the edge against nginx serving the same bytes with the same certificate.

One-core rows (``hit_*``): both servers pinned to one core (one edge worker, and
the node agent, against one nginx worker); wrk runs on the other core(s).
Two-worker rows (``hit2_*``): two edge workers against nginx with
``worker_processes 2``, nothing pinned, wrk on the same two cores. The file is
read through the edge twice first, so every chunk is in the edge's cache and both
servers read from the page cache.
The two servers are loaded one after the other, never at once.
"""

from __future__ import annotations

import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BenchConfig,
    client_cpus,
    cpus,
    pin_process,
    server_cpu,
    standalone,
    thread_affinities,
)
from bench.nginx import Nginx, start_nginx
from bench.results import Goal, Row
from bench.stack import DIRECT, MIB, WORKERS2, BenchStack, Edge, SharedFile, shared_stack
from bench.wrk import WrkResult, run_wrk

NAMES = (
    "hit_1mib_http",
    "hit_1mib_https",
    "hit_64kib_https",
    "hit_full_https",
    "hit2_1mib_https",
    "hit2_64kib_https",
    "hit2_full_https",
)
GOALS: dict[str, Goal | None] = {
    "hit_1mib_http": Goal("ratio", ">=", 0.8),
    "hit_1mib_https": Goal("ratio", ">=", 0.8),
    "hit_64kib_https": Goal("ratio", ">=", 0.8),
    "hit_full_https": Goal("ratio", ">=", 0.8),
    "hit2_1mib_https": Goal("ratio", ">=", 0.9),
    "hit2_64kib_https": Goal("ratio", ">=", 0.7),
    "hit2_full_https": Goal("ratio", ">=", 0.9),
}
CONNECTIONS = 16


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    tls: bool
    range_size: int  # 0: the whole file
    per_second: str  # "bytes" (throughput) or "requests"


CASES = (
    Case("hit_1mib_http", tls=False, range_size=MIB, per_second="bytes"),
    Case("hit_1mib_https", tls=True, range_size=MIB, per_second="bytes"),
    Case("hit_64kib_https", tls=True, range_size=64 * 1024, per_second="requests"),
    Case("hit_full_https", tls=True, range_size=0, per_second="bytes"),
)
CASES2 = (
    Case("hit2_1mib_https", tls=True, range_size=MIB, per_second="bytes"),
    Case("hit2_64kib_https", tls=True, range_size=64 * 1024, per_second="requests"),
    Case("hit2_full_https", tls=True, range_size=0, per_second="bytes"),
)


def _rate(result: WrkResult, case: Case) -> float:
    if case.per_second == "bytes":
        return result.bytes_per_second / MIB
    return result.requests_per_second


def tls_of(url: str, context: ssl.SSLContext) -> str:
    """The protocol and cipher a server picks for OpenSSL's default offer (wrk's too)."""
    parts = urllib.parse.urlsplit(url)
    with (
        socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 443), timeout=10
        ) as raw,
        context.wrap_socket(raw, server_hostname=parts.hostname) as tls,
    ):
        cipher = tls.cipher()
    return f"{cipher[1]} {cipher[0]}" if cipher else "none"


def check_pinned(pid: int, cpu: int, what: str) -> None:
    masks = thread_affinities(pid)
    if masks != {frozenset({cpu})}:
        raise RuntimeError(f"{what} (pid {pid}) is not pinned to CPU {cpu}: {masks}")


def nginx_root(config: BenchConfig, shared: SharedFile) -> Path:
    """nginx serves the same bytes at the same path (the query is ignored there)."""
    root = config.workdir / "nginx-root"
    (root / "f").mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    (root / "f").chmod(0o755)
    target = root / "f" / shared.file_id
    if not target.exists():
        target.hardlink_to(shared.path)
    return root


def run(config: BenchConfig, wanted: set[str]) -> list[Row]:
    size = config.pick_int(256 * MIB, 64 * MIB, 8 * MIB)
    stack = shared_stack(config)
    shared = stack.upload("hits", size)
    rows: list[Row] = []
    if wanted & {case.name for case in CASES}:
        rows += _one_core(config, stack, shared, wanted)
    if wanted & {case.name for case in CASES2}:
        rows += _two_workers(config, stack, shared, wanted)
    return rows


def _one_core(
    config: BenchConfig, stack: BenchStack, shared: SharedFile, wanted: set[str]
) -> list[Row]:
    edge = stack.edges[DIRECT]
    stack.warm(edge, shared)
    root = nginx_root(config, shared)
    cpu = server_cpu()
    for pid in edge.pids():
        pin_process(pid, [cpu])
    nginx = start_nginx(root, edge.cert, edge.key, config.workdir / "nginx", cpu=cpu)
    try:
        # The same core for both servers (checked), wrk on the others, and the same
        # TLS parameters: otherwise the ratio measures the setup.
        for pid in edge.pids():
            check_pinned(pid, cpu, "the edge")
        for pid in nginx.pids():
            check_pinned(pid, cpu, "nginx")
        setup = (
            f"servers on CPU {cpu} (edge agent+worker and nginx master+worker, "
            f"checked), wrk on CPU {','.join(map(str, client_cpus()))}"
        )
        return _compare(config, stack, shared, edge, nginx, CASES, wanted, setup)
    finally:
        nginx.stop()
        # Later families (misses) time the edge against unpinned processes: give it
        # every core back.
        for pid in edge.pids():
            pin_process(pid, cpus())


def _two_workers(
    config: BenchConfig, stack: BenchStack, shared: SharedFile, wanted: set[str]
) -> list[Row]:
    edge = stack.edges[WORKERS2]
    stack.warm(edge, shared)
    workers = edge.worker_pids()
    if len(workers) != 2:
        raise RuntimeError(f"{edge.name} runs {len(workers)} workers, not 2")
    nginx = start_nginx(
        nginx_root(config, shared), edge.cert, edge.key, config.workdir / "nginx2", workers=2
    )
    try:
        setup = (
            f"2 edge workers (pids {workers}) and nginx worker_processes 2, "
            f"unpinned; wrk on the same CPUs {','.join(map(str, cpus()))}"
        )
        return _compare(config, stack, shared, edge, nginx, CASES2, wanted, setup)
    finally:
        nginx.stop()


def _compare(
    config: BenchConfig,
    stack: BenchStack,
    shared: SharedFile,
    edge: Edge,
    nginx: Nginx,
    cases: tuple[Case, ...],
    wanted: set[str],
    setup: str,
) -> list[Row]:
    size = shared.size
    seconds = config.pick(5, 2, 1)  # per run; each server runs twice per case
    probe = f"/f/{shared.file_id}?{shared.query}"
    tls = {
        "edge": tls_of(stack.file_url(edge, shared), stack.ssl_context()),
        "nginx": tls_of(nginx.url(probe, tls=True), stack.ssl_context()),
    }
    if tls["edge"] != tls["nginx"]:
        raise RuntimeError(f"the servers negotiate different TLS: {tls}")
    setup = f"{setup}; TLS {tls['edge']} on both"
    rows: list[Row] = []
    for case in cases:
        if case.name not in wanted:
            continue
        edge_url = stack.file_url(edge, shared, tls=case.tls)
        nginx_url = nginx.url(probe, tls=case.tls)
        # Whole-file runs last longer, so each connection finishes some requests.
        run_seconds = seconds if case.range_size else config.pick(15, 3, 1)
        common = {
            "range_size": case.range_size,
            "file_size": size,
            "connections": CONNECTIONS,
            "seconds": run_seconds,
            "workdir": config.workdir,
        }
        # A B B A: drift in the machine's speed during the case hits both alike.
        # A tiny run (the harness check in the tests) measures nothing: A B.
        subject = run_wrk(edge_url, **common)  # type: ignore[arg-type]
        reference = run_wrk(nginx_url, **common)  # type: ignore[arg-type]
        if not config.tiny:
            reference += run_wrk(nginx_url, **common)  # type: ignore[arg-type]
            subject += run_wrk(edge_url, **common)  # type: ignore[arg-type]
        rounds = 1 if config.tiny else 2
        unit = "MiB/s" if case.per_second == "bytes" else "requests/s"
        note = (
            f"edge p99 {subject.p99_ms:.1f} ms vs nginx {reference.p99_ms:.1f} ms; "
            f"{CONNECTIONS} connections, {rounds} x {run_seconds:g} s each "
            f"({'AB' if config.tiny else 'ABBA'}), "
            f"file {size // MIB} MiB; requests done edge {subject.requests} "
            f"nginx {reference.requests}"
        )
        if subject.errors or reference.errors:
            note += f"; errors edge {subject.errors} nginx {reference.errors}"
        note += f"; {setup}"
        rows.append(
            Row(
                name=case.name,
                value=_rate(subject, case),
                reference=_rate(reference, case),
                goal=GOALS[case.name],
                unit=unit,
                note=note,
            )
        )
    return rows


def main() -> int:
    return standalone(NAMES, GOALS, run, "cache hits: edge against nginx")


if __name__ == "__main__":
    raise SystemExit(main())
