"""Edge memory: resident set size while 64 clients stream a large cached file over
HTTPS, against nginx (master and workers together) under the same load: one edge
worker (and its node agent) on one core against one nginx worker, and two edge
workers (all processes summed) against nginx with two.

RSS is sampled from /proc every 100 ms during the load; the peak is the figure.
The edge's RSS before the load is in the note, and both servers' peak summed PSS
(shared pages split between the processes mapping them: what the node really uses,
where the RSS sum counts shared libraries once per process).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from bench.common import BenchConfig, pin_process, pss_bytes, rss_bytes, server_cpu, standalone
from bench.nginx import start_nginx
from bench.results import Goal, Row
from bench.stack import DIRECT, MIB, WORKERS2, shared_stack
from bench.wrk import WrkResult, run_wrk

NAMES = ("edge_rss_64_streams_mib", "edge2_rss_64_streams_mib")
GOALS: dict[str, Goal | None] = {
    "edge_rss_64_streams_mib": None,
    # Issue #16: at most 150 MiB per worker, all of the node's processes summed.
    "edge2_rss_64_streams_mib": Goal("value", "<=", 300),
}
STREAMS = 64


def peak_rss_during(
    load: Callable[[], WrkResult], pids: Callable[[], list[int]], limit: float
) -> tuple[int, int, WrkResult]:
    """Run ``load`` in a thread; the peak summed RSS and PSS of ``pids`` meanwhile."""
    box: dict[str, WrkResult | BaseException] = {}

    def target() -> None:
        try:
            box["result"] = load()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    peak = peak_pss = 0
    end = time.monotonic() + limit
    while thread.is_alive() and time.monotonic() < end:
        total = total_pss = 0
        for pid in pids():
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                total += rss_bytes(pid)
                total_pss += pss_bytes(pid)
        peak = max(peak, total)
        peak_pss = max(peak_pss, total_pss)
        time.sleep(0.1)
    thread.join(timeout=max(0.0, end - time.monotonic()))
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    if "result" not in box:
        raise TimeoutError("the load did not finish in time")
    return peak, peak_pss, box["result"]  # type: ignore[return-value]


def run(config: BenchConfig, wanted: set[str]) -> list[Row]:
    size = config.pick_int(256 * MIB, 64 * MIB, 8 * MIB)  # the same file as ``hits``
    seconds = config.pick(10, 3, 1)
    stack = shared_stack(config)
    shared = stack.upload("hits", size)
    root = config.workdir / "nginx-root"
    (root / "f").mkdir(parents=True, exist_ok=True)
    for folder in (root, root / "f"):
        folder.chmod(0o755)
    target = root / "f" / shared.file_id
    if not target.exists():
        target.hardlink_to(shared.path)
    limit = seconds + 120

    def load(url: str) -> Callable[[], WrkResult]:
        return lambda: run_wrk(
            url,
            range_size=0,
            file_size=size,
            connections=STREAMS,
            seconds=seconds,
            workdir=config.workdir,
            timeout_seconds=60,
        )

    rows: list[Row] = []
    for name, edge_name, workers in (
        ("edge_rss_64_streams_mib", DIRECT, 1),
        ("edge2_rss_64_streams_mib", WORKERS2, 2),
    ):
        if name not in wanted:
            continue
        edge = stack.edges[edge_name]
        stack.warm(edge, shared)
        cpu = server_cpu() if workers == 1 else None
        if cpu is not None:
            for pid in edge.pids():
                pin_process(pid, [cpu])
        idle = sum(rss_bytes(pid) for pid in edge.pids())
        edge_peak, edge_pss, edge_load = peak_rss_during(
            load(stack.file_url(edge, shared)), edge.pids, limit
        )
        nginx = start_nginx(
            root,
            edge.cert,
            edge.key,
            config.workdir / f"nginx-mem{workers}",
            cpu=cpu,
            workers=workers,
        )
        try:
            nginx_peak, nginx_pss, nginx_load = peak_rss_during(
                load(nginx.url(f"/f/{shared.file_id}", tls=True)), nginx.pids, limit
            )
        finally:
            nginx.stop()
        rows.append(
            Row(
                name=name,
                value=edge_peak / MIB,
                reference=nginx_peak / MIB,
                goal=GOALS[name],
                unit="MiB peak RSS",
                note=(
                    f"reference=nginx master+{workers} worker(s); edge = node agent + "
                    f"{workers} worker(s), summed; idle {idle / MIB:.1f} MiB; peak summed PSS "
                    f"edge {edge_pss / MIB:.1f} MiB, nginx {nginx_pss / MIB:.1f} MiB; "
                    f"{STREAMS} HTTPS streams of a {size // MIB} MiB cached file for "
                    f"{seconds:g} s; served "
                    f"edge {edge_load.bytes_per_second / MIB:.0f} MiB/s, nginx "
                    f"{nginx_load.bytes_per_second / MIB:.0f} MiB/s"
                ),
            )
        )
    return rows


def main() -> int:
    return standalone(NAMES, GOALS, run, "edge memory under 64 streams")


if __name__ == "__main__":
    raise SystemExit(main())
