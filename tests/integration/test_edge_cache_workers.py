"""The chunk cache shared by several real worker processes (issue #16): one fill per
chunk on the node, stream-through across processes, no torn or half-evicted reads,
nothing left valid by a worker killed mid-fill, and pins, hashes and the disk cap
holding across workers. Each worker is ``cache_worker.py``: the real edge app over
the real cache, reading moto through the test's origin proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests

from edge_node.cache import CacheConfig, ChunkCache
from edge_node.cache.fill import Origin
from edge_node.cache.layout import Layout, key_for
from edge_node.manifest import Manifest
from tests.helpers import wait_for
from tests.integration.edge_fixtures import moto_s3
from tests.integration.edge_publishing import put_file, share_query
from tests.integration.origin_proxy import OriginProxy

BUCKET = "cache-workers"
CHUNK = 1024 * 1024
PART = 256 * 1024
WORKER = Path(__file__).parent / "cache_worker.py"


@dataclass
class Worker:
    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


class Node:
    """Workers over one cache root, started and killed by the test."""

    def __init__(self, root: Path, proxy: OriginProxy, max_bytes: int) -> None:
        self.root = root
        self.proxy = proxy
        self.max_bytes = max_bytes
        self.workers: list[Worker] = []

    def publish(self, data: bytes, *, imported: bool = False) -> Manifest:
        manifest = put_file(BUCKET, data, CHUNK, imported=imported)
        return manifest

    def start(self, *, recover: bool = False) -> Worker:
        number = len(self.workers)
        spec = {
            "root": str(self.root / "cache"),
            "bucket": BUCKET,
            "origin": self.proxy.url,
            "recover": recover,
            "max_bytes": self.max_bytes,
            "part_bytes": PART,
        }
        path = self.root / f"worker-{number}.json"
        path.write_text(json.dumps(spec))
        process = subprocess.Popen(
            [sys.executable, str(WORKER), str(path)], stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("ready "), line
        worker = Worker(process, int(line.split()[1]))
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture(scope="module")
def proxy() -> Iterator[OriginProxy]:
    with moto_s3() as endpoint:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        origin = OriginProxy(endpoint)
        origin.start()
        try:
            yield origin
        finally:
            origin.stop()


@pytest.fixture
def node(tmp_path: Path, proxy: OriginProxy) -> Iterator[Node]:
    proxy.clear()
    proxy.release()
    made = Node(tmp_path, proxy, max_bytes=64 * CHUNK)
    try:
        yield made
    finally:
        proxy.release()
        made.stop()


def fetch(worker: Worker, manifest: Manifest, first: int, last: int) -> bytes:
    answer = requests.get(
        f"{worker.url}/f/{manifest.file_id}",
        params=share_query(manifest.file_id, manifest.version),
        headers={"Range": f"bytes={first}-{last}"},
        timeout=60,
    )
    assert answer.status_code == 206, answer.text
    return answer.content


def origin_bytes(proxy: OriginProxy, manifest: Manifest) -> int:
    return sum(last - first + 1 for first, last in proxy.gets_for(manifest.key))


def stored_files(root: Path) -> list[Path]:
    return [p for p in (root / "cache" / "chunks").glob("*/*/*/*") if p.is_file()]


def test_a_chunk_is_fetched_once_and_streams_through_to_another_worker(node: Node) -> None:
    data = os.urandom(CHUNK)
    manifest = node.publish(data)
    first, second = node.start(recover=True), node.start()
    node.proxy.pause(after_bytes=PART + 64 * 1024)  # the origin stalls mid-chunk
    part = Layout(node.root / "cache").part_path(key_for(manifest, 0))
    with ThreadPoolExecutor(2) as pool:
        filler = pool.submit(fetch, first, manifest, 0, CHUNK - 1)
        wait_for(lambda: part.exists() and part.stat().st_size >= PART, "the fill's first bytes")
        # The other worker streams what is in place while the origin is still stalled.
        follower = requests.get(
            f"{second.url}/f/{manifest.file_id}",
            params=share_query(manifest.file_id, manifest.version),
            headers={"Range": f"bytes=0-{CHUNK - 1}"},
            stream=True,
            timeout=60,
        )
        head = follower.raw.read(PART)
        assert head == data[:PART]
        node.proxy.release()
        rest = follower.raw.read()
        assert head + rest == data
        assert filler.result(timeout=60) == data
    # One fill on the node: the origin sent the chunk's bytes once.
    assert origin_bytes(node.proxy, manifest) == CHUNK
    assert fetch(second, manifest, 0, CHUNK - 1) == data


def test_concurrent_misses_on_two_workers_read_the_origin_once(node: Node) -> None:
    data = os.urandom(4 * CHUNK)
    manifest = node.publish(data)
    workers = [node.start(recover=True), node.start()]
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda i: fetch(workers[i % 2], manifest, 0, len(data) - 1), range(8))
        )
    assert all(answer == data for answer in answers)
    assert origin_bytes(node.proxy, manifest) == len(data)


def test_a_worker_killed_mid_fill_leaves_nothing_served_as_valid(node: Node) -> None:
    data = os.urandom(CHUNK)
    manifest = node.publish(data)
    doomed, survivor = node.start(recover=True), node.start()
    node.proxy.pause(after_bytes=PART + 64 * 1024)
    part = Layout(node.root / "cache").part_path(key_for(manifest, 0))
    with ThreadPoolExecutor(1) as pool:
        cut = pool.submit(fetch, doomed, manifest, 0, CHUNK - 1)
        wait_for(lambda: part.exists() and part.stat().st_size >= PART, "the fill's first bytes")
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(timeout=30)
        with pytest.raises(requests.exceptions.RequestException):
            cut.result(timeout=60)
    node.proxy.release()
    assert stored_files(node.root) == []  # the half-written chunk never took its path
    assert fetch(survivor, manifest, 0, CHUNK - 1) == data  # refetched, whole, verified
    restarted = node.start()
    assert fetch(restarted, manifest, 0, CHUNK - 1) == data
    assert [p.read_bytes() for p in stored_files(node.root)] == [data]


def test_the_disk_cap_holds_and_no_read_is_torn_under_eviction(
    tmp_path: Path, proxy: OriginProxy
) -> None:
    proxy.clear()
    node = Node(tmp_path, proxy, max_bytes=3 * CHUNK)
    try:
        data = os.urandom(8 * CHUNK)
        manifest = node.publish(data)
        workers = [node.start(recover=True), node.start()]
        peak = 0
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.is_set():
                sizes = []
                for path in stored_files(tmp_path):
                    with contextlib.suppress(FileNotFoundError):
                        sizes.append(path.stat().st_size)
                peak = max(peak, sum(sizes))

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(12):
                first = rng.randrange(len(data) - 1)
                last = min(len(data) - 1, first + rng.randrange(1, 2 * CHUNK))
                assert fetch(workers[seed % 2], manifest, first, last) == data[first : last + 1]

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with ThreadPoolExecutor(6) as pool:
                list(pool.map(reader, range(6)))
        finally:
            done.set()
            watcher.join()
        assert 0 < peak <= 3 * CHUNK
    finally:
        node.stop()


def test_a_chunk_pinned_by_one_process_survives_eviction_by_another(
    tmp_path: Path, proxy: OriginProxy
) -> None:
    proxy.clear()
    node = Node(tmp_path, proxy, max_bytes=2 * CHUNK)
    try:
        data = os.urandom(4 * CHUNK)
        manifest = node.publish(data)
        worker = node.start(recover=True)
        assert fetch(worker, manifest, 0, CHUNK - 1) == data[:CHUNK]
        pinned = key_for(manifest, 0)

        async def hold_and_press() -> None:
            # This test process is a third one on the same cache: it holds chunk 0.
            holder = ChunkCache(
                tmp_path / "cache", proxy_origin_unused(), CacheConfig(max_bytes=2 * CHUNK)
            )
            await holder.open(recover=False, manage=False)
            try:
                async with holder.lease(manifest, 0) as lease:
                    # The worker fills chunks 1..3 past the cap: chunk 0 is the LRU one.
                    for index in (1, 2, 3):
                        first = index * CHUNK
                        got = await asyncio.to_thread(
                            fetch, worker, manifest, first, first + CHUNK - 1
                        )
                        assert got == data[first : first + CHUNK]
                    assert holder.path_for(pinned).exists()
                    body = b"".join([bytes(b) async for b in lease.blocks(0, CHUNK)])
                    assert body == data[:CHUNK]
            finally:
                await holder.close()

        asyncio.run(hold_and_press())
    finally:
        node.stop()


def test_hashes_learned_by_one_worker_check_another_workers_first_open(node: Node) -> None:
    data = os.urandom(2 * CHUNK)
    manifest = node.publish(data, imported=True)  # no SHA-256 known yet
    first, second = node.start(recover=True), node.start()
    assert fetch(first, manifest, 0, len(data) - 1) == data
    path = Layout(node.root / "cache").chunk_path(key_for(manifest, 1))
    wait_for(path.exists, "the chunk stored")
    damaged = bytearray(path.read_bytes())
    damaged[5] ^= 0xFF  # a flipped byte on disk, same size
    path.write_bytes(bytes(damaged))
    before = origin_bytes(node.proxy, manifest)
    # The second worker opens the file for the first time: it checks it against the
    # hash the first one recorded, drops it and fetches the chunk again.
    assert fetch(second, manifest, CHUNK, 2 * CHUNK - 1) == data[CHUNK:]
    assert origin_bytes(node.proxy, manifest) == before + CHUNK
    wait_for(lambda: path.exists() and path.read_bytes() == data[CHUNK:], "the chunk refetched")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(data[CHUNK:]).hexdigest()


def proxy_origin_unused() -> Origin:
    """An origin for a process that only holds leases on stored chunks."""

    class Unused:
        async def read_into(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("the holder never fills")

    return Unused()
