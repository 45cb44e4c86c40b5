"""The data plane reads S3 only: heads, version manifests and folder listings the control
plane publishes, over real HTTPS against a real moto S3 server, with the revalidation
bound (``FSNODE_MANIFEST_MAX_AGE``) set to one second.

- A delete or an overwrite with no traffic in between: once the bound has passed, the
  edge refuses the old version (410) and serves the new one; a response already running
  finishes (the old bytes stay readable for the grace period).
- A share reaches only what its head names: a version never published, or a version
  whose manifest is gone, is never served; a file past its expiry is gone.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from fsnode_core.published_keys import head_key, version_manifest_key

from edge_node.manifest import Manifest
from tests.helpers import https_session, wait_for
from tests.integration.edge_fixtures import EdgeServer, ThrowawayCA, counted_edge
from tests.integration.edge_publishing import (
    delete_file,
    folder_token,
    folder_url,
    overwrite,
    put_file,
    share_query,
)

BUCKET = "fsnode-edge-published"
CHUNK = 64 * 1024
MAX_AGE = 1.0
V2 = "2" * 32


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    with counted_edge(tmp_path_factory, BUCKET, MAX_AGE) as server:
        yield server


@pytest.fixture(scope="module")
def http(edge: EdgeServer) -> Iterator[requests.Session]:
    with https_session(edge.ca_file) as session:
        yield session


def get(
    http: requests.Session,
    edge: EdgeServer,
    manifest: Manifest,
    *,
    pinned: bool = True,
    **kwargs: object,
) -> requests.Response:
    query = share_query(manifest.file_id, manifest.version if pinned else None)
    return http.get(f"{edge.url}/f/{manifest.file_id}", params=query, **kwargs)  # type: ignore[arg-type]


def past_the_bound() -> None:
    """No traffic for longer than the bound: every head the edge holds is too old."""
    time.sleep(MAX_AGE * 1.2)


def test_a_delete_stops_new_responses_within_the_bound(
    edge: EdgeServer, http: requests.Session
) -> None:
    data = os.urandom(CHUNK + 10)
    manifest = put_file(BUCKET, data, CHUNK, path="bound/deleted.mp4")
    assert get(http, edge, manifest).content == data  # cached: chunks, head and manifest
    token = folder_token("bound/")
    assert http.get(folder_url(edge.url, token, "bound/deleted.mp4")).content == data
    delete_file(BUCKET, manifest)
    past_the_bound()
    for pinned in (True, False):
        refused = get(http, edge, manifest, pinned=pinned)
        assert refused.status_code == 410, refused.text
        assert refused.json()["error"]["message"] == "the file has been deleted"
    assert http.get(folder_url(edge.url, token, "bound/deleted.mp4")).status_code == 404


def test_an_overwrite_serves_the_new_version_within_the_bound(
    edge: EdgeServer, http: requests.Session
) -> None:
    old, new = os.urandom(CHUNK + 10), os.urandom(2 * CHUNK + 5)
    first = put_file(BUCKET, old, CHUNK, path="bound/replaced.mp4")
    token = folder_token("bound/")
    url = folder_url(edge.url, token, "bound/replaced.mp4")
    assert get(http, edge, first, pinned=False).content == old
    assert http.get(url).content == old
    second = overwrite(BUCKET, first, new, V2)
    past_the_bound()
    assert get(http, edge, first, pinned=False).content == new
    assert http.get(url).content == new
    replaced = get(http, edge, first)  # pinned to the first version
    assert replaced.status_code == 410
    assert "replaced" in replaced.json()["error"]["message"]
    assert get(http, edge, second).content == new


def test_a_running_response_finishes_after_a_delete(
    edge: EdgeServer, http: requests.Session
) -> None:
    data = os.urandom(6 * CHUNK)
    manifest = put_file(BUCKET, data, CHUNK, path="bound/streaming.mp4")
    with get(http, edge, manifest, stream=True) as answer:
        assert answer.status_code == 200
        body = answer.raw.read(1000)
        delete_file(BUCKET, manifest)  # the bytes stay for the grace period
        past_the_bound()
        body += answer.raw.read()
    assert body == data
    assert get(http, edge, manifest).status_code == 410


def test_only_the_version_the_head_names_is_served(
    edge: EdgeServer, http: requests.Session
) -> None:
    data = os.urandom(100)
    manifest = put_file(BUCKET, data, CHUNK, path="bound/pinned.mp4")
    never = share_query(manifest.file_id, "9" * 32)  # a version that was never published
    answer = http.get(f"{edge.url}/f/{manifest.file_id}", params=never)
    assert answer.status_code == 410
    # A version whose manifest is gone (collected) is never served, even if named.
    other = put_file(BUCKET, data, CHUNK, path="bound/collected.mp4")
    boto3.client("s3").delete_object(
        Bucket=BUCKET, Key=version_manifest_key(other.file_id, other.version)
    )
    assert get(http, edge, other).status_code == 410


def test_a_file_past_its_expiry_is_gone(edge: EdgeServer, http: requests.Session) -> None:
    manifest = put_file(
        BUCKET, b"soon gone", CHUNK, path="bound/expired.mp4", expires_at=int(time.time()) - 1
    )
    answer = get(http, edge, manifest)
    assert answer.status_code == 410
    assert answer.json()["error"]["message"] == "the file has expired"


def test_an_unknown_file_is_not_found_and_costs_one_head_read(
    edge: EdgeServer, http: requests.Session
) -> None:
    manifest = put_file(BUCKET, b"x", CHUNK)
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=head_key(manifest.file_id))
    before = edge.published.head_reads
    for _ in range(3):
        answer = get(http, edge, manifest)
        assert answer.status_code == 404
    assert edge.published.head_reads == before + 1  # the answer is kept within the bound


@pytest.fixture(scope="module")
def early_edge(edge: EdgeServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    """An edge that reads a cold request's first range beside its head and manifest."""
    server = EdgeServer(tmp_path_factory.mktemp("early"), ThrowawayCA(), BUCKET, early_reads=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("size", "range_header"),
    [
        (5 * CHUNK, f"bytes={CHUNK + 100}-{CHUNK + 200}"),  # inside a later chunk
        (5 * CHUNK, None),  # the whole file
        (300, "bytes=10-"),  # shorter than the early read: the object ends first
        (3 * CHUNK, "bytes=-100"),  # a suffix range starts no early read
    ],
)
def test_a_cold_first_range_is_read_beside_the_manifest(
    early_edge: EdgeServer, size: int, range_header: str | None
) -> None:
    data = os.urandom(size)
    manifest = put_file(BUCKET, data, CHUNK)
    early = early_edge.early
    assert early is not None
    started, used = early.started, early.used_bytes
    with https_session(early_edge.ca_file) as http:
        headers = {"Range": range_header} if range_header else {}
        answer = get(http, early_edge, manifest, headers=headers)
    first, _, last = (range_header or "bytes=0-").removeprefix("bytes=").partition("-")
    expected = (
        data[-int(last) :] if not first else data[int(first) : int(last) + 1 if last else None]
    )
    assert answer.content == expected
    if range_header == "bytes=-100":
        assert early.started == started
        return
    assert early.started == started + 1
    assert early.used_bytes > used  # the fill took the early bytes instead of asking again
    with requests.Session() as http:
        http.trust_env = False
        text = http.get(f"{early_edge.url}/metrics", verify=str(early_edge.ca_file)).text
    assert f"fsnode_edge_early_read_bytes_used_total {early.used_bytes}" in text


def test_an_import_never_takes_early_bytes(early_edge: EdgeServer) -> None:
    data = os.urandom(CHUNK + 7)
    manifest = put_file(BUCKET, data, CHUNK, imported=True)
    early = early_edge.early
    assert early is not None
    used = early.used_bytes
    with https_session(early_edge.ca_file) as http:
        assert get(http, early_edge, manifest).content == data
    assert early.used_bytes == used  # its reads are pinned to the object's ETag


def test_a_restarted_edge_reads_no_early_range_for_chunks_it_holds(
    edge: EdgeServer, tmp_path: Path
) -> None:
    data = os.urandom(2 * CHUNK + 9)
    manifest = put_file(BUCKET, data, CHUNK)
    for run in range(2):
        server = EdgeServer(tmp_path, ThrowawayCA(), BUCKET, early_reads=True)
        server.start()
        try:
            with https_session(server.ca_file) as http:
                assert get(http, server, manifest).content == data
            assert server.early is not None and server.context is not None
            if run == 0:
                kept = functools.partial(server.context.cache.contains, manifest)
                wait_for(lambda: all(map(kept, range(3))), "chunks on disk")  # noqa: B023
            else:
                # A restart forgets manifests, not chunks: nothing read but the metadata.
                assert server.early.started == 0
                assert server.origin.ranges == []
        finally:
            server.stop()
