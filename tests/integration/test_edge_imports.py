"""Imported files over real HTTPS: an S3 object registered by bucket and key has no
chunk hashes until the control plane's hashing job has read it. Until then the edge
hashes what it reads (pinned to the import's ETag, so an object replaced under the
same key is refused) and checks its own cache against that; it never reports a hash,
so no edge's word changes what others serve. Once the job's hashes are in the
manifest (edges read it from S3 with the file's head), fetched bytes are checked against
them. Chunks kept on disk are checked again after a restart.

Files are published to S3 as the control plane publishes them (``put_file``); the real
control plane is covered end to end (tests/e2e/test_cli_files.py).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator

import boto3
import pytest
import requests

from edge_node.manifest import Manifest
from tests.helpers import wait_for
from tests.integration.edge_fixtures import EdgeServer, ThrowawayCA, moto_s3
from tests.integration.edge_publishing import put_file, share_query, write_hashes

BUCKET = "fsnode-edge-imports"
CHUNK = 64 * 1024
DATA = os.urandom(3 * CHUNK + 999)


@pytest.fixture(scope="module")
def ca() -> ThrowawayCA:
    return ThrowawayCA()


@pytest.fixture(scope="module")
def s3(ca: ThrowawayCA) -> Iterator[None]:
    with moto_s3():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture
def edge(
    s3: None, ca: ThrowawayCA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EdgeServer]:
    server = EdgeServer(tmp_path_factory.mktemp("edge"), ca, BUCKET)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def publish(edge: EdgeServer, data: bytes = DATA) -> Manifest:
    return put_file(BUCKET, data, CHUNK, imported=True)


def get(edge: EdgeServer, manifest: Manifest, range_header: str | None = None) -> requests.Response:
    with requests.Session() as http:
        http.trust_env = False
        return http.get(
            f"{edge.url}/f/{manifest.file_id}",
            params=share_query(manifest.file_id, manifest.version),
            headers={"Range": range_header} if range_header else {},
            verify=str(edge.ca_file),
            timeout=30,
        )


def sha(index: int, data: bytes = DATA) -> str:
    return hashlib.sha256(data[index * CHUNK : (index + 1) * CHUNK]).hexdigest()


def metric(edge: EdgeServer, name: str) -> float:
    with requests.Session() as http:
        http.trust_env = False
        text = http.get(f"{edge.url}/metrics", verify=str(edge.ca_file), timeout=30).text
    match = re.search(rf"^fsnode_edge_{name} (\S+)$", text, re.M)
    assert match, name
    return float(match.group(1))


def chunk_reads(edge: EdgeServer, manifest: Manifest, index: int) -> int:
    return edge.origin.reads_within(manifest.key, manifest.chunks[index])


def test_each_chunk_is_hashed_on_first_fetch_and_checked_after(edge: EdgeServer) -> None:
    manifest = publish(edge)
    assert all(chunk.sha256 is None for chunk in manifest.chunks)

    answer = get(edge, manifest)
    assert (answer.status_code, answer.content) == (200, DATA)
    assert metric(edge, "chunk_hashes_learned_total") == 4
    assert edge.context is not None
    learned = edge.context.manifests.peek(manifest.file_id)
    assert learned is not None and [c.sha256 for c in learned.chunks] == [sha(i) for i in range(4)]
    # Read again: hits, checked against what was learned; nothing fetched.
    reads = len(edge.origin.ranges)
    assert get(edge, manifest, f"bytes={CHUNK - 5}-").content == DATA[CHUNK - 5 :]
    assert len(edge.origin.ranges) == reads


def test_bytes_that_differ_from_the_recorded_hash_are_never_served(edge: EdgeServer) -> None:
    manifest = publish(edge)
    # The control plane's hashing job recorded other bytes for chunk 1 (the origin's
    # object was not what it hashed), and this edge reads that manifest.
    write_hashes(BUCKET, manifest, [sha(0), "0" * 64, sha(2), sha(3)])
    assert edge.context is not None
    edge.context.manifests.forget(manifest.file_id)

    # One byte: the answer waits for the check, so it is a clean 502.
    answer = get(edge, manifest, f"bytes={CHUNK + 10}-{CHUNK + 10}")
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "integrity_error"
    cache = edge.context.cache if edge.context else None
    assert cache is not None
    # This reader failed with the first fetch; the fill tries once more for others.
    wait_for(lambda: not cache.is_filling(manifest, 1), "the fill to give up")
    assert chunk_reads(edge, manifest, 1) == 2
    assert not cache.contains(manifest, 1)
    assert metric(edge, "integrity_failures_total") == 2

    # Many bytes: they stream, but the body is cut before its end, never complete.
    with pytest.raises(requests.exceptions.RequestException):
        cut = get(edge, manifest, f"bytes={CHUNK}-{2 * CHUNK - 1}")
        cut.raise_for_status()
        pytest.fail(f"a body of {len(cut.content)} bytes was delivered as complete")
    # The other chunks are unaffected.
    assert get(edge, manifest, f"bytes=0-{CHUNK - 1}").content == DATA[:CHUNK]


def test_a_hash_the_control_plane_recorded_is_matched(edge: EdgeServer) -> None:
    manifest = publish(edge)
    write_hashes(BUCKET, manifest, [sha(i) for i in range(4)])  # the hashing job has run
    answer = get(edge, manifest, f"bytes={2 * CHUNK}-{3 * CHUNK - 1}")
    assert (answer.status_code, answer.content) == (206, DATA[2 * CHUNK : 3 * CHUNK])


def test_the_hashes_reach_an_edge_that_already_holds_the_manifest(edge: EdgeServer) -> None:
    manifest = publish(edge)
    assert get(edge, manifest, "bytes=0-99").content == DATA[:100]
    write_hashes(BUCKET, manifest, [sha(i) for i in range(4)])
    assert edge.context is not None
    store = edge.context.manifests
    store.distrust_all()  # as once the bound has passed: the head is read again
    assert get(edge, manifest, "bytes=0-99").content == DATA[:100]

    def hashed() -> bool:
        kept = store.peek(manifest.file_id)
        return kept is not None and [c.sha256 for c in kept.chunks] == [sha(i) for i in range(4)]

    wait_for(hashed, "the manifest's hashes to be picked up")


def test_a_restart_checks_the_kept_chunks(
    s3: None, ca: ThrowawayCA, tmp_path_factory: pytest.TempPathFactory
) -> None:
    state = tmp_path_factory.mktemp("restart")
    first = EdgeServer(state, ca, BUCKET)
    first.start()
    try:
        manifest = publish(first)
        assert get(first, manifest).content == DATA
        cache = first.context.cache if first.context else None
        assert cache is not None
        wait_for(lambda: all(cache.contains(manifest, i) for i in range(4)), "chunks on disk")
    finally:
        first.stop()

    # Not hashed yet: the chunks on disk are hashed at first use and served.
    second = EdgeServer(state, ca, BUCKET)
    second.start()
    try:
        answer = get(second, manifest)
        assert (answer.status_code, answer.content) == (200, DATA)
        assert second.origin.ranges == []  # every byte from disk
    finally:
        second.stop()


def test_an_object_replaced_under_its_key_is_refused(edge: EdgeServer) -> None:
    manifest = publish(edge)
    other = os.urandom(len(DATA))  # same size: only the ETag tells them apart
    boto3.client("s3").put_object(Bucket=BUCKET, Key=manifest.key, Body=other)

    answer = get(edge, manifest, "bytes=0-99")
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "origin_error"
    assert edge.context is not None
    kept = edge.context.manifests.peek(manifest.file_id)
    assert kept is not None and all(c.sha256 is None for c in kept.chunks)  # nothing learned
