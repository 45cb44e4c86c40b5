"""Stale-while-revalidate over real HTTPS: a hit whose manifest copy is stale is served
at once even while the control plane stalls, and a deletion seen by the background
refresh stops the file serving (410).

The edge refreshes its copies after 0 s here, so every hit past the first finds a
stale one. The control plane is the fixtures' in-test source, which can stall.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest
import requests

from edge_node.manifests import Manifest
from tests.helpers import wait_for
from tests.integration.edge_fixtures import (
    EdgeServer,
    StaticManifestSource,
    ThrowawayCA,
    moto_s3,
    put_file,
    share_query,
)

BUCKET = "fsnode-edge-refresh"
CHUNK = 64 * 1024
DATA = os.urandom(2 * CHUNK + 999)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    with moto_s3():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        server = EdgeServer(
            tmp_path_factory.mktemp("edge"), ThrowawayCA(), StaticManifestSource(),
            manifest_refresh_seconds=0,
        )  # fmt: skip
        server.start()
        try:
            yield server
        finally:
            server.source.stalled.clear()
            server.stop()


@pytest.fixture
def http(edge: EdgeServer) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(edge.ca_file)
        yield session


def publish(edge: EdgeServer) -> tuple[Manifest, str, dict[str, str]]:
    manifest = put_file(BUCKET, DATA, CHUNK)
    edge.source.manifests[manifest.file_id] = manifest
    url = f"{edge.url}/f/{manifest.file_id}"
    return manifest, url, share_query(manifest.file_id, manifest.version)


def test_a_hit_does_not_wait_for_a_stalled_control_plane(
    edge: EdgeServer, http: requests.Session
) -> None:
    _manifest, url, query = publish(edge)
    assert http.get(url, params=query, timeout=30).content == DATA  # cold: waits, fills
    edge.source.stalled.set()
    try:
        for first in (0, CHUNK, 2 * CHUNK):
            # Were a hit to wait on the control plane, it would hang here until the
            # timeout: the stall only ends when the test clears it.
            answer = http.get(
                url, params=query, headers={"Range": f"bytes={first}-"}, timeout=30
            )
            assert (answer.status_code, answer.content) == (206, DATA[first:])
        # The stale copy was refreshed behind the hits: one call, stalled, in flight.
        assert edge.source.stalled_calls == 1
    finally:
        edge.source.stalled.clear()


def test_a_deletion_seen_on_refresh_stops_serving(
    edge: EdgeServer, http: requests.Session
) -> None:
    manifest, url, query = publish(edge)
    assert http.get(url, params=query, timeout=30).content == DATA
    edge.source.deleted.add(manifest.file_id)
    statuses: list[int] = []

    def gone() -> bool:
        answer = http.get(url, params=query, timeout=30)
        statuses.append(answer.status_code)
        if answer.status_code == 200:
            assert answer.content == DATA  # the copy still serving until the refresh lands
        return answer.status_code == 410

    wait_for(gone, "the deletion to reach the edge")
    # The hit that found the copy stale was still served; no more than those in flight.
    assert statuses[0] == 200 and set(statuses[:-1]) <= {200}
    for _ in range(3):
        answer = http.get(url, params=query, headers={"Range": "bytes=0-9"}, timeout=30)
        assert answer.status_code == 410
        assert answer.json()["error"]["code"] == "gone"
    assert edge.context is not None and edge.context.manifests.peek(manifest.file_id) is None
