"""Cold misses: the edge against reading the origin (moto's S3) directly.

- ``miss_ttfb``: time to the first body byte of a 64 KiB range of a file the edge
  has never seen, at the URL the share's redirect gives (its version ticket lets the
  edge read the data first and the manifest after: docs/PROTOCOL.md),
  against the same range read straight from moto with a presigned URL. Both go over a
  connection opened and used once before the clock starts, so neither pays a
  handshake; the order alternates per file. ``miss_ttfb_slow_control_plane``: the
  same, on fresh files, while every control-plane answer to the edge is held 200 ms
  (the data plane does not ask it, so the figure should not move).
- ``miss_cold_seq``: one client reading a cold file start to end, through the
  throttled edge (its origin is behind the per-connection throttling proxy),
  against one connection reading the same object through the same proxy.
"""

from __future__ import annotations

import http.client
import random
import statistics
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from bench.common import BenchConfig, Unavailable, standalone
from bench.results import Goal, Row
from bench.stack import DIRECT, MIB, STATIC, THROTTLED, BenchStack, origin_rate, shared_stack

NAMES = ("miss_ttfb", "miss_cold_seq")
# How late the control plane answers the edge in miss_ttfb_slow_control_plane.
SLOW_CONTROL_PLANE = 0.2
GOALS: dict[str, Goal | None] = {
    "miss_ttfb": Goal("ratio", "<=", 1.5),
    "miss_cold_seq": Goal("ratio", "<=", 0.5),
}
RANGE = 64 * 1024


def _s3(stack: BenchStack, endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    from fsnode.localstack.resources import LOCAL_CREDENTIALS

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=stack.info.region,
        config=Config(signature_version="s3v4"),
        **LOCAL_CREDENTIALS,
    )


def _connection(url: str, stack: BenchStack) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, port, context=stack.ssl_context(), timeout=60)
    return http.client.HTTPConnection(host, port, timeout=60)


def _ttfb(conn: http.client.HTTPConnection, url: str, first: int) -> float:
    """Seconds from sending a ranged GET to holding its first body byte."""
    parts = urllib.parse.urlsplit(url)
    path = f"{parts.path}?{parts.query}" if parts.query else parts.path
    headers = {"Range": f"bytes={first}-{first + RANGE - 1}"}
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    answer = conn.getresponse()
    if answer.status != 206:
        raise RuntimeError(f"GET {parts.netloc} answered {answer.status}: {answer.read()[:200]!r}")
    answer.read(1)
    elapsed = time.perf_counter() - started
    answer.read()  # the rest, so the connection can be used again
    return elapsed


@dataclass(slots=True)
class _Cold:
    """First-byte times of one pass over cold files: edge and direct, first chunk and a
    later one."""

    edge: list[float] = field(default_factory=list)
    direct: list[float] = field(default_factory=list)
    chunk_edge: list[float] = field(default_factory=list)
    chunk_direct: list[float] = field(default_factory=list)


def _cold_pass(
    stack: BenchStack, label: str, files: int, size: int, rng: random.Random
) -> tuple[_Cold, int]:
    """Cold reads of ``files`` never-seen files through the direct edge and straight
    from moto (the order alternates per file); the chunk size."""
    edge = stack.edges[DIRECT]
    s3 = _s3(stack, stack.aws_endpoint)
    shared = [stack.upload(f"{label}-{i}", size) for i in range(files + 1)]
    records = [stack.client.get_file(item.file_id) for item in shared]
    direct_urls = [
        s3.generate_presigned_url(
            "get_object", Params={"Bucket": r["bucket"], "Key": r["key"]}, ExpiresIn=3600
        )
        for r in records
    ]
    edge_conn = _connection(edge.url, stack)
    direct_conn = _connection(stack.aws_endpoint, stack)
    chunk_size = int(records[0]["chunk_size"])
    filled = min(chunk_size, size)  # what the cache gains per cold read
    held = stack.cache_bytes(edge)
    # The first file only opens both connections (and is not counted).
    _ttfb(edge_conn, stack.file_url(edge, shared[0]), 0)
    held = _settled(stack, held + filled)
    _ttfb(direct_conn, direct_urls[0], 0)
    # moto does some work on the first read of an object after its upload; touch
    # each once so whichever side reads first does not pay for it.
    for url in direct_urls[1:]:
        _ttfb(direct_conn, url, 0)
    # A second read per file, four chunks on: the manifest is known by then and the
    # edge's read-ahead (the next chunk) has not touched it, so only the chunk is cold.
    later = 4 if size >= 5 * chunk_size else None
    cold = _Cold()
    try:
        for i in range(1, files + 1):
            span = min(chunk_size, size) // RANGE
            reads = [(cold.edge, cold.direct, rng.randrange(0, span) * RANGE)]
            if later is not None:
                offset = later * chunk_size + rng.randrange(0, chunk_size // RANGE) * RANGE
                reads.append((cold.chunk_edge, cold.chunk_direct, offset))
            for edge_list, direct_list, first in reads:
                runs = [
                    (edge_list, edge_conn, stack.file_url(edge, shared[i])),
                    (direct_list, direct_conn, direct_urls[i]),
                ]
                for times, conn, url in runs if i % 2 else reversed(runs):
                    times.append(_ttfb(conn, url, first))
                    if conn is edge_conn:
                        held = _settled(stack, held + filled)
    finally:
        edge_conn.close()
        direct_conn.close()
    return cold, chunk_size


def _settled(stack: BenchStack, expected: int) -> int:
    """Wait (bounded) until the direct edge's cache holds ``expected`` bytes: the fill
    a cold read started (the rest of its chunk, beyond the 64 KiB read) is stored, so
    it does not load moto during the next read, on either side. The bytes held."""
    edge = stack.edges[DIRECT]
    deadline = time.monotonic() + 30
    held = stack.cache_bytes(edge)
    while held < expected and time.monotonic() < deadline:
        time.sleep(0.02)
        held = stack.cache_bytes(edge)
    return held


def measure_ttfb(stack: BenchStack, config: BenchConfig) -> list[Row]:
    files = config.pick_int(12, 5, 2)
    size = config.pick_int(24 * MIB, 24 * MIB, MIB)
    rng = random.Random(8)
    cold, _chunk_size = _cold_pass(stack, "ttfb", files, size, rng)
    median = statistics.median
    rows = [
        Row(
            name="miss_ttfb",
            value=median(cold.edge) * 1000,
            reference=median(cold.direct) * 1000,
            goal=GOALS["miss_ttfb"],
            unit="ms (median)",
            note=(
                f"{files} cold files of {size // MIB} MiB, 64 KiB range in the first chunk, "
                f"the URL a share's redirect gives (version pinned, with its version ticket: "
                f"one S3 GET before the first byte, the manifest read after it); both sides "
                f"on a connection opened before the clock starts (no handshake on either), "
                f"each read after the edge's previous fill is stored (no background load), "
                f"the edge over HTTPS (TLS record work a viewer pays), moto over HTTP; edge max "
                f"{max(cold.edge) * 1000:.1f} ms, direct max {max(cold.direct) * 1000:.1f} ms"
            ),
        )
    ]
    if cold.chunk_edge:
        # Same files, same edge: the difference is what a cold file costs over a cold chunk.
        extra = (median(cold.edge) - median(cold.chunk_edge)) * 1000
        rows[0].note += f"; cold file minus cold chunk (its metadata's cost) {extra:.1f} ms"
        rows.append(
            Row(
                name="miss_ttfb_chunk",
                value=median(cold.chunk_edge) * 1000,
                reference=median(cold.chunk_direct) * 1000,
                goal=GOALS["miss_ttfb"],
                unit="ms (median)",
                note=(
                    "diagnostic: manifest already known, only the chunk is cold (the edge "
                    "fetches it as parallel ranged GETs of FSNODE_ORIGIN_PART_BYTES)"
                ),
            )
        )
    rows.append(_slow_control_plane(stack, files, size, rng, median(cold.edge)))
    return rows


def _slow_control_plane(
    stack: BenchStack, files: int, size: int, rng: random.Random, normal: float
) -> Row:
    """The same cold reads while the control plane answers the edge 200 ms late: the data
    plane reads S3 only, so the figure should not move."""
    proxy = stack.api_proxy
    if proxy is None:
        return Row(
            name="miss_ttfb_slow_control_plane",
            value=None,
            reference=None,
            goal=GOALS["miss_ttfb"],
            skipped="the control plane latency proxy is missing",
        )
    proxy.delay = SLOW_CONTROL_PLANE
    answers = proxy.answers
    try:
        cold, _chunk_size = _cold_pass(stack, "ttfb-slow-cp", files, size, rng)
    finally:
        proxy.delay = 0.0
    edge = statistics.median(cold.edge)
    return Row(
        name="miss_ttfb_slow_control_plane",
        value=edge * 1000,
        reference=statistics.median(cold.direct) * 1000,
        goal=GOALS["miss_ttfb"],
        unit="ms (median)",
        note=(
            f"as miss_ttfb, with every control-plane answer to the edge held "
            f"{SLOW_CONTROL_PLANE * 1000:.0f} ms (a latency proxy on its node routes; "
            f"{proxy.answers - answers} answers delayed meanwhile); miss_ttfb's edge "
            f"median {normal * 1000:.1f} ms, this one {edge * 1000:.1f} ms"
        ),
    )


def _read_seconds(url: str, stack: BenchStack, expected: int, timeout: float) -> float:
    context = stack.ssl_context() if url.startswith("https") else None
    started = time.perf_counter()
    total = 0
    with urllib.request.urlopen(url, context=context, timeout=60) as answer:
        while block := answer.read(MIB):
            total += len(block)
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"read {total} of {expected} bytes in {timeout:.0f} s")
    if total != expected:
        raise RuntimeError(f"read {total} of {expected} bytes from {url.split('?')[0]}")
    return time.perf_counter() - started


def measure_cold_seq(stack: BenchStack, config: BenchConfig) -> list[Row]:
    if stack.proxy is None:
        raise Unavailable("the throttling proxy did not start")
    size = config.pick_int(256 * MIB, 32 * MIB, 4 * MIB)
    rate = origin_rate(config)
    edge = stack.edges[THROTTLED]
    shared = stack.upload(f"cold-seq-{size}", size)
    record = stack.client.get_file(shared.file_id)
    s3 = _s3(stack, stack.proxy.url)
    direct_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": record["bucket"], "Key": record["key"]}, ExpiresIn=3600
    )
    if stack.cache_bytes(edge):
        raise RuntimeError(f"{edge.name} is not cold: its cache holds bytes already")
    limit = 3 * size / rate + 60  # far above what the throttle allows: a stall, not a result
    direct = _read_seconds(direct_url, stack, size, limit)
    through_edge = _read_seconds(stack.file_url(edge, shared), stack, size, limit)
    rows = [
        Row(
            name="miss_cold_seq",
            value=through_edge,
            reference=direct,
            goal=GOALS["miss_cold_seq"],
            unit="s",
            note=(
                f"{size // MIB} MiB cold, one client stream; moto behind a proxy limiting each "
                f"connection to {rate / MIB:g} MiB/s; edge {size / through_edge / MIB:.1f} MiB/s, "
                f"direct {size / direct / MIB:.1f} MiB/s"
            ),
        )
    ]
    # The same read with an origin that is not moto (nginx serving the object's
    # bytes): a cross-check that the figure is the edge's, not the origin's.
    static_edge = stack.edges[STATIC]
    if stack.static_proxy is not None and not stack.cache_bytes(static_edge):
        path = stack.publish_static(shared)
        static_direct = _read_seconds(f"{stack.static_proxy.url}{path}", stack, size, limit)
        static_edge_s = _read_seconds(stack.file_url(static_edge, shared), stack, size, limit)
        rows.append(
            Row(
                name="miss_cold_seq_static_origin",
                value=static_edge_s,
                reference=static_direct,
                goal=GOALS["miss_cold_seq"],
                unit="s",
                note=(
                    f"diagnostic: origin = nginx serving the object at its S3 path behind the "
                    f"same {rate / MIB:g} MiB/s-per-connection proxy; edge "
                    f"{size / static_edge_s / MIB:.1f} MiB/s, direct "
                    f"{size / static_direct / MIB:.1f} MiB/s"
                ),
            )
        )
    return rows


def run(config: BenchConfig, wanted: set[str]) -> list[Row]:
    stack = shared_stack(config)
    rows = []
    if "miss_ttfb" in wanted:
        rows.extend(measure_ttfb(stack, config))
    if "miss_cold_seq" in wanted:
        rows.extend(measure_cold_seq(stack, config))
    return rows


def main() -> int:
    return standalone(NAMES, GOALS, run, "cold misses: edge against the origin directly")


if __name__ == "__main__":
    raise SystemExit(main())
