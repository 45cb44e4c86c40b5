"""Share checks and bad ids are refused; origin faults reach the client as errors or cut
bodies, never as wrong bytes; concurrent misses share one origin read; a chunk file
damaged on disk is fetched again; health and metrics answer."""

from __future__ import annotations

import json
import os
import re
import time
from http.client import HTTPSConnection
from pathlib import Path

import boto3
import pytest
import requests
from fsnode_core.ids import new_id
from fsnode_core.signing import SharePolicy

from edge_node.cache import CacheConfig, version_tag
from tests.helpers import https_session
from tests.integration.edge_fixtures import EdgeServer, ThrowawayCA, concurrent_gets
from tests.integration.edge_publishing import VERSION, share_query, signer
from tests.integration.edge_server.served import (
    BUCKET,
    CHUNK,
    DATA,
    file_url,
    publish,
)


def test_signature_checks(edge: EdgeServer, http: requests.Session) -> None:
    manifest = publish(edge)
    url = file_url(edge, manifest)
    good = share_query(manifest.file_id, VERSION)
    forged = {**good, "sig": good["sig"][:-4] + ("AAAA" if good["sig"][-4:] != "AAAA" else "BBBB")}
    expired = signer().sign(SharePolicy(manifest.file_id, int(time.time()) - 10))
    other_file = share_query(new_id(), VERSION)
    cases = [
        forged,
        expired,
        {**good, "kid": "nope"},
        {**good, "exp": str(int(good["exp"]) + 60)},  # policy no longer matches the signature
        {k: v for k, v in good.items() if k != "sig"},
        {},
        {**other_file},  # a valid signature, for another file
    ]
    for query in cases:
        answer = http.get(url, params=query)
        assert answer.status_code == 403, query
        assert answer.json()["error"]["code"] == "forbidden"
    assert http.get(url, params=good).status_code == 200


def test_superseded_version_is_gone(edge: EdgeServer, http: requests.Session) -> None:
    manifest = publish(edge)
    answer = http.get(file_url(edge, manifest), params=share_query(manifest.file_id, "0" * 32))
    assert answer.status_code == 410
    assert answer.json()["error"]["code"] == "gone"


def test_unknown_file_is_not_found(edge: EdgeServer, http: requests.Session) -> None:
    file_id = new_id()
    answer = http.get(f"{edge.url}/f/{file_id}", params=share_query(file_id, VERSION))
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "raw_id",
    [
        "..",
        "%2e%2e",
        "abc",
        "0123456789ABCDEF0123456789ABCDEF",  # upper case
        "0123456789abcdef0123456789abcdef0",  # 33 characters
        "..%5C..%5Cetc",
        "0123456789abcdef0123456789abcde%00",
    ],
)
def test_path_tricks_in_ids_are_rejected(edge: EdgeServer, raw_id: str) -> None:
    # http.client sends the path as is: requests would normalise dot segments away.
    connection = HTTPSConnection("127.0.0.1", edge.port, context=edge.client_ssl())
    try:
        connection.request("GET", f"/f/{raw_id}?v=1")
        answer = connection.getresponse()
        body = json.loads(answer.read())
    finally:
        connection.close()
    assert answer.status == 400
    assert body["error"]["code"] == "invalid_input"


def test_missing_origin_object_is_a_502(edge: EdgeServer, http: requests.Session) -> None:
    manifest = publish(edge)
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=manifest.key)
    answer = http.get(file_url(edge, manifest), params=share_query(manifest.file_id, VERSION))
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "origin_error"


def test_healthz_and_metrics(edge: EdgeServer, http: requests.Session) -> None:
    health = http.get(f"{edge.url}/healthz")
    assert health.status_code == 200
    assert health.json()["ok"] is True
    text = http.get(f"{edge.url}/metrics").text
    for name in (
        "fsnode_edge_cache_hits_total",
        "fsnode_edge_cache_misses_total",
        "fsnode_edge_bytes_served_total",
        "fsnode_edge_cache_evictions_total",
        "fsnode_edge_requests_in_flight",
        "fsnode_edge_cache_bytes",
        "fsnode_edge_head_reads_total",
        "fsnode_edge_manifest_reads_total",
        "fsnode_edge_tree_list_pages_total",
        "fsnode_edge_prefetch_segments_total",
    ):
        assert re.search(rf"^{name} \d+", text, re.M), name


def test_concurrent_cold_requests_cause_one_origin_read(edge: EdgeServer) -> None:
    manifest = publish(edge)
    query = share_query(manifest.file_id, VERSION)
    url = file_url(edge, manifest)
    span = (CHUNK + 100, CHUNK + 5000)  # inside chunk 1 only

    results = concurrent_gets(edge, url, query, {"Range": f"bytes={span[0]}-{span[1]}"}, 50)
    assert all(status == 206 for status, _ in results)
    assert all(body == DATA[span[0] : span[1] + 1] for _, body in results)
    assert edge.origin.reads[(manifest.key, CHUNK)] == 1


def test_origin_failure_mid_body_cuts_the_connection(
    edge: EdgeServer, http: requests.Session
) -> None:
    manifest = publish(edge)
    query = share_query(manifest.file_id, VERSION)
    url = file_url(edge, manifest)
    assert http.get(url, params=query, headers={"Range": "bytes=0-0"}).status_code == 206
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=manifest.key)
    # Chunk 0 is cached, so the 200 starts; a later chunk cannot be read, and the
    # client must see a short body rather than a complete-looking wrong one.
    with pytest.raises(requests.exceptions.RequestException):
        answer = http.get(url, params=query)
        assert len(answer.content) < len(DATA)
        answer.raise_for_status()
        pytest.fail("a truncated body was delivered as complete")


def test_a_chunk_truncated_on_disk_after_its_check_is_dropped_and_refetched(
    edge: EdgeServer, tmp_path: Path
) -> None:
    """The chunk file shrinks after it was verified (a disk fault): the next lease sees
    it (one fstat), drops it and fills the chunk again, over HTTPS and over plain
    HTTP (sendfile) alike: never a 502 forever (#17.6)."""
    disk_only = EdgeServer(
        tmp_path,
        ThrowawayCA(),
        BUCKET,
        cache_config=CacheConfig(max_bytes=64 * 1024 * 1024),
    )
    disk_only.start()
    try:
        manifest = publish(edge)
        query = share_query(manifest.file_id, VERSION)
        with https_session(disk_only.ca_file) as session:
            url = f"{disk_only.url}/f/{manifest.file_id}"
            assert session.get(url, params=query).content == DATA  # chunks on disk
            assert disk_only.context is not None
            # The answer's last byte waits for the check, not for the chunk's commit.
            disk_only.call(disk_only.context.cache.idle())
            path = disk_only.context.cache.path_for((manifest.file_id, version_tag(VERSION), 1))
            span = {"Range": f"bytes={CHUNK + 10}-{CHUNK + 5000}"}
            for base in (url, f"{disk_only.plain_url}/f/{manifest.file_id}"):
                os.truncate(path, 100)
                answer = session.get(base, params=query, headers=span, timeout=20)
                assert answer.status_code == 206
                assert answer.content == DATA[CHUNK + 10 : CHUNK + 5001]
                disk_only.call(disk_only.context.cache.idle())
                assert path.stat().st_size == CHUNK  # dropped and fetched again
            assert disk_only.context.cache.stats.damaged_files == 2
    finally:
        disk_only.stop()
