"""The edge's miss path and cache bounds over real HTTPS, against a real moto S3
server reached through a proxy that can pause, fail, reset or stall (no timing).

Covers: stream-through (bytes reach the client while the origin is still sending),
request collapsing with parallel ranged GETs, read-ahead on sequential reads,
retries and the 502/504 ends of the budget, a truncated body when the origin dies
after the first bytes, restart with a warm disk, a corrupted chunk file, and the
disk watermarks.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from edge_node.cache import CacheConfig
from edge_node.manifest import Manifest
from edge_node.origin import OriginConfig
from tests.helpers import https_session, wait_for
from tests.integration.edge_fixtures import EdgeServer, ThrowawayCA, concurrent_gets, moto_s3
from tests.integration.edge_publishing import put_file, share_query
from tests.integration.origin_proxy import OriginProxy

BUCKET = "fsnode-edge-origin"
CHUNK = 256 * 1024
PARTS = 4
PART = CHUNK // PARTS
DATA = os.urandom(6 * CHUNK + 4321)

ORIGIN = OriginConfig(
    max_attempts=3,
    budget_seconds=10.0,
    connect_timeout=1.0,
    read_timeout=0.5,
    base_delay=0.02,
    max_delay=0.1,
)


def cache_config(**overrides: object) -> CacheConfig:
    values: dict[str, object] = {
        "max_bytes": 64 * 1024 * 1024,
        "part_bytes": PART,
        "max_parts": PARTS,
        "min_free_ratio": 0.0,
    }
    values.update(overrides)
    return CacheConfig(**values)  # type: ignore[arg-type]


class Stack:
    def __init__(self, proxy: OriginProxy, ca: ThrowawayCA, tmp: pytest.TempPathFactory) -> None:
        self.proxy = proxy
        self.ca = ca
        self.tmp = tmp

    def edge(self, state_dir: Path | None = None, **config: object) -> EdgeServer:
        server = EdgeServer(
            state_dir or self.tmp.mktemp("edge"),
            self.ca,
            BUCKET,
            cache_config=cache_config(**config),
            origin_config=ORIGIN,
            origin_endpoint=self.proxy.url,
        )
        server.start()
        return server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with moto_s3() as endpoint:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        proxy = OriginProxy(endpoint)
        proxy.start()
        try:
            yield Stack(proxy, ThrowawayCA(), tmp_path_factory)
        finally:
            proxy.stop()


@pytest.fixture(scope="module")
def edge(stack: Stack) -> Iterator[EdgeServer]:
    server = stack.edge()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(stack: Stack) -> Iterator[OriginProxy]:
    stack.proxy.clear()
    yield stack.proxy
    stack.proxy.release()
    stack.proxy.clear()


def publish(edge: EdgeServer, data: bytes = DATA) -> Manifest:
    return put_file(BUCKET, data, CHUNK)


def get(
    edge: EdgeServer, manifest: Manifest, first: int, last: int, **kwargs: object
) -> requests.Response:
    with https_session(edge.ca_file) as http:
        return http.get(
            f"{edge.url}/f/{manifest.file_id}",
            params=share_query(manifest.file_id, manifest.version),
            headers={"Range": f"bytes={first}-{last}"},
            **kwargs,  # type: ignore[arg-type]
        )


def part_ranges(index: int) -> list[tuple[int, int]]:
    base = index * CHUNK
    return [(base + i * PART, base + (i + 1) * PART - 1) for i in range(PARTS)]


def metric(edge: EdgeServer, name: str) -> float:
    with https_session(edge.ca_file) as http:
        text = http.get(f"{edge.url}/metrics").text
    match = re.search(rf"^fsnode_edge_{name} (\S+)$", text, re.M)
    assert match, name
    return float(match.group(1))


def test_cold_bytes_stream_through_before_the_origin_finishes(
    edge: EdgeServer, proxy: OriginProxy
) -> None:
    manifest = publish(edge)
    cache = edge.context
    assert cache is not None
    # Every origin answer stops after its first 20 kB until released.
    proxy.pause(20_000)
    with get(edge, manifest, 0, CHUNK - 1, stream=True) as answer:
        assert answer.status_code == 206
        first = answer.raw.read(4096)
        assert first == DATA[:4096]
        # The chunk is still being fetched: these bytes came through, not from disk.
        assert cache.cache.is_filling(manifest, 0)
        assert not cache.cache.contains(manifest, 0)
        proxy.release()
        rest = answer.raw.read()
    assert first + rest == DATA[:CHUNK]


def test_fifty_cold_requests_make_one_set_of_parallel_ranged_gets(
    edge: EdgeServer, proxy: OriginProxy
) -> None:
    manifest = publish(edge)
    query = share_query(manifest.file_id, manifest.version)
    url = f"{edge.url}/f/{manifest.file_id}"
    first, last = CHUNK + 100, CHUNK + 50_000  # inside chunk 1

    results = concurrent_gets(edge, url, query, {"Range": f"bytes={first}-{last}"}, 50)
    assert all(status == 206 for status, _ in results)
    assert all(body == DATA[first : last + 1] for _, body in results)
    # One fill of chunk 1, as four concurrent ranged GETs, and nothing else.
    assert sorted(proxy.gets_for(manifest.key)) == part_ranges(1)


def test_a_seek_into_a_cold_chunk_streams_from_a_small_get_at_its_offset(
    stack: Stack, proxy: OriginProxy
) -> None:
    head = 8 * 1024
    seeker = stack.edge(first_part_bytes=head)
    try:
        manifest = publish(seeker)
        first = CHUNK + PART + 30_000  # well inside chunk 1's second even part
        last = first + 3999
        # Every origin answer stops after about its status, headers and `head` bytes:
        # only a GET that starts at the reader's offset can bring the reader its bytes.
        proxy.pause(head + 2048)
        with get(seeker, manifest, first, last, stream=True, timeout=30) as answer:
            assert answer.status_code == 206
            assert answer.raw.read(3999) == DATA[first:last]  # the last byte waits for the hash
            assert context_of(seeker).cache.is_filling(manifest, 1)
            proxy.release()
            assert answer.raw.read() == DATA[last : last + 1]
        cache = context_of(seeker).cache
        wait_for(lambda: cache.contains(manifest, 1), "the chunk verified and kept")
        gets = sorted(proxy.gets_for(manifest.key))
        assert (first, first + head - 1) in gets
        # One fill, whose GETs cover chunk 1 exactly once.
        assert gets[0][0] == CHUNK and gets[-1][1] == 2 * CHUNK - 1
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(gets))
    finally:
        seeker.stop()


def test_sequential_reads_fetch_the_next_chunks_ahead(edge: EdgeServer, proxy: OriginProxy) -> None:
    manifest = publish(edge)
    assert context_of(edge).cache is not None
    assert context_of(edge).origin is not None
    retries_before = context_of(edge).origin.retries
    assert get(edge, manifest, 0, CHUNK - 1).content == DATA[:CHUNK]
    assert get(edge, manifest, CHUNK, 2 * CHUNK - 1).content == DATA[CHUNK : 2 * CHUNK]
    cache = context_of(edge).cache
    # The second request continued the first: chunks 2 and 3 come without being asked.
    wait_for(lambda: cache.contains(manifest, 2) and cache.contains(manifest, 3), "read-ahead")
    assert not cache.contains(manifest, 4)
    answer = get(edge, manifest, 2 * CHUNK, 3 * CHUNK - 1)
    assert answer.content == DATA[2 * CHUNK : 3 * CHUNK]
    # Each of chunks 0-3 was fetched once (reading on may already fetch chunk 4).
    fetched = [r for r in proxy.gets_for(manifest.key) if r[0] < 4 * CHUNK]
    assert sorted(set(fetched)) == [r for index in range(4) for r in part_ranges(index)]
    # A part asked twice is one the edge retried (a read that outlived the 0.5 s
    # read timeout on a loaded machine), never a second fill of the same chunk.
    retried = context_of(edge).origin.retries - retries_before
    assert len(fetched) - len(set(fetched)) <= retried, sorted(fetched)


def context_of(edge: EdgeServer):  # type: ignore[no-untyped-def]
    assert edge.context is not None
    return edge.context


@pytest.mark.parametrize("fault", ["500", "reset"])
def test_origin_errors_are_retried(edge: EdgeServer, proxy: OriginProxy, fault: str) -> None:
    manifest = publish(edge)
    proxy.fail_next(fault, 2)
    answer = get(edge, manifest, 0, CHUNK - 1)
    assert (answer.status_code, answer.content) == (206, DATA[:CHUNK])
    assert len(proxy.gets_for(manifest.key)) == PARTS + 2


def test_a_cut_answer_resumes_at_the_first_missing_byte(
    edge: EdgeServer, proxy: OriginProxy
) -> None:
    manifest = publish(edge)
    proxy.cut_after = 10_000
    proxy.fail_next("cut")
    answer = get(edge, manifest, 0, CHUNK - 1)
    assert (answer.status_code, answer.content) == (206, DATA[:CHUNK])
    starts = [first for first, _ in proxy.gets_for(manifest.key)]
    assert len(starts) == PARTS + 1
    resumed = [s for s in starts if s % PART]
    assert len(resumed) == 1  # the retry asked only for what was missing


def test_persistent_origin_errors_end_in_a_502(edge: EdgeServer, proxy: OriginProxy) -> None:
    manifest = publish(edge)
    proxy.fail_next("500", 100)
    answer = get(edge, manifest, 0, 99)
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "origin_error"
    # Bounded: a part gives up after max_attempts, and the fill then stops the others.
    assert ORIGIN.max_attempts <= len(proxy.gets_for(manifest.key)) <= PARTS * ORIGIN.max_attempts
    proxy.clear()
    assert get(edge, manifest, 0, 99).content == DATA[:100]  # nothing poisoned


def test_a_stalled_origin_ends_in_a_504(edge: EdgeServer, proxy: OriginProxy) -> None:
    manifest = publish(edge)
    proxy.fail_next("stall", 100)
    answer = get(edge, manifest, 0, 99)
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "origin_timeout"
    assert ORIGIN.max_attempts <= len(proxy.gets_for(manifest.key)) <= PARTS * ORIGIN.max_attempts


def test_an_origin_dying_after_the_first_bytes_truncates_the_body(
    edge: EdgeServer, proxy: OriginProxy
) -> None:
    manifest = publish(edge)
    proxy.pause(20_000)
    with get(edge, manifest, 0, CHUNK - 1, stream=True) as answer:
        assert answer.status_code == 206
        assert answer.raw.read(4096) == DATA[:4096]
        proxy.fail_next("500", 100)
        proxy.abort_all()
        proxy.release()
        # The client checks Content-Length: a cut body raises instead of ending cleanly.
        with pytest.raises(requests.exceptions.RequestException):
            rest = b"".join(answer.iter_content(64 * 1024))
            pytest.fail(f"a truncated body was delivered as complete ({len(rest)} bytes)")
    proxy.clear()


def test_plain_http_hits_use_sendfile(edge: EdgeServer, proxy: OriginProxy) -> None:
    manifest = publish(edge)
    assert get(edge, manifest, 0, CHUNK - 1).status_code == 206
    cache = context_of(edge).cache
    wait_for(lambda: cache.contains(manifest, 0), "the chunk on disk")
    before = metric(edge, "sendfile_bytes_total")
    with requests.Session() as http:
        http.trust_env = False
        answer = http.get(
            f"{edge.plain_url}/f/{manifest.file_id}",
            params=share_query(manifest.file_id, manifest.version),
            headers={"Range": f"bytes=10-{CHUNK - 1}"},
        )
    assert answer.content == DATA[10:CHUNK]
    assert metric(edge, "sendfile_bytes_total") - before == CHUNK - 10


def test_restart_keeps_the_cache_and_catches_a_corrupted_chunk(
    stack: Stack, proxy: OriginProxy
) -> None:
    state = stack.tmp.mktemp("restart")
    data = DATA[: 3 * CHUNK]
    first = stack.edge(state)
    try:
        manifest = publish(first, data)
        assert get(first, manifest, 0, len(data) - 1).content == data
        cache = context_of(first).cache
        wait_for(lambda: all(cache.contains(manifest, i) for i in range(3)), "chunks on disk")
        path = cache.path_for((manifest.file_id, manifest.version, 1))
    finally:
        first.stop()
    damaged = bytearray(path.read_bytes())
    damaged[1000] ^= 0x01  # one flipped bit: only the SHA-256 can tell
    path.write_bytes(bytes(damaged))
    proxy.clear()

    second = stack.edge(state)
    try:
        assert get(second, manifest, 0, len(data) - 1).content == data
        # Chunks 0 and 2 came from disk; only the damaged chunk 1 was fetched again.
        assert sorted(proxy.gets_for(manifest.key)) == part_ranges(1)
        assert metric(second, "integrity_failures_total") == 1
    finally:
        second.stop()


def test_disk_watermarks_stay_bounded(stack: Stack, proxy: OriginProxy) -> None:
    small = stack.edge(max_bytes=4 * CHUNK, high_water=0.75, low_water=0.5)
    try:
        manifest = publish(small)
        with https_session(small.ca_file) as http:
            answer = http.get(
                f"{small.url}/f/{manifest.file_id}",
                params=share_query(manifest.file_id, manifest.version),
            )
        assert answer.content == DATA
        cache = context_of(small).cache
        small.call(cache.idle())
        # Settled under the high watermark (the unit tests pin down the low one: here
        # where the last pass stopped depends on the order fills finished in).
        wait_for(lambda: cache.used_bytes <= 3 * CHUNK, "eviction under the high watermark")
        assert metric(small, "cache_evictions_total") > 0
        assert metric(small, "cache_bytes") <= 4 * CHUNK
    finally:
        small.stop()
