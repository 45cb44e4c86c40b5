"""Share policies at the edge, over real HTTPS: client address ranges (``ip=``),
start times (``nbf=``) and prefix shares (``pfx=``, an HLS or DASH folder), and
which address counts as the client's when a load balancer sits in front.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace

import boto3
import pytest
import requests
from edge_fixtures import (
    EdgeServer,
    StaticManifestSource,
    ThrowawayCA,
    moto_s3,
    put_file,
    signer,
)
from fsnode_core.signing import SharePolicy

from edge_node.manifests import Manifest

BUCKET = "fsnode-edge-policies"
CHUNK = 64 * 1024
DATA = os.urandom(CHUNK + 100)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    with moto_s3():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        server = EdgeServer(tmp_path_factory.mktemp("edge"), ThrowawayCA(), StaticManifestSource())
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def behind_proxy(edge: EdgeServer) -> Iterator[EdgeServer]:
    """The edge told that one proxy in front appends the client to X-Forwarded-For."""
    assert edge.context is not None
    edge.context.trusted_proxy_hops = 1
    try:
        yield edge
    finally:
        edge.context.trusted_proxy_hops = 0


def publish(edge: EdgeServer, name: str = "", data: bytes = DATA) -> Manifest:
    manifest = put_file(BUCKET, data, CHUNK, name=name)
    edge.source.manifests[manifest.file_id] = manifest
    return manifest


def share(
    manifest: Manifest | None = None,
    *,
    not_before: int | None = None,
    ip: str | None = None,
    prefix: str | None = None,
) -> dict[str, str]:
    """A signed query: for one file version, or (``prefix=...``) for a folder."""
    file_id, version = (manifest.file_id, manifest.version) if manifest else ("", "")
    expires = int(time.time()) + 600
    return signer().sign(SharePolicy(file_id, version, expires, not_before, ip, prefix))


def get(
    edge: EdgeServer, manifest: Manifest, query: dict[str, str], **headers: str
) -> requests.Response:
    with requests.Session() as http:
        http.trust_env = False
        return http.get(
            f"{edge.url}/f/{manifest.file_id}",
            params=query,
            headers=headers,
            verify=str(edge.ca_file),
            timeout=30,
        )


def refused(answer: requests.Response) -> bool:
    return answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("network", "allowed"),
    [
        ("127.0.0.1/32", True),
        ("127.0.0.0/8", True),
        ("10.0.0.0/8", False),
        ("127.0.0.2/32", False),
        ("::1/128", False),  # the client came over IPv4
    ],
)
def test_ip_bound_shares_admit_only_clients_inside_the_range(
    edge: EdgeServer, network: str, allowed: bool
) -> None:
    manifest = publish(edge)
    answer = get(edge, manifest, share(manifest, ip=network))
    if allowed:
        assert (answer.status_code, answer.content) == (200, DATA)
    else:
        assert refused(answer), answer.text


def test_a_share_is_refused_before_its_start_time(edge: EdgeServer) -> None:
    manifest = publish(edge)
    now = int(time.time())
    early = get(edge, manifest, share(manifest, not_before=now + 300))
    assert refused(early)
    assert "not valid yet" in early.json()["error"]["message"]
    started = get(edge, manifest, share(manifest, not_before=now - 5))
    assert (started.status_code, started.content) == (200, DATA)


def test_a_prefix_share_serves_every_file_under_its_prefix_and_no_other(edge: EdgeServer) -> None:
    playlist = publish(edge, "shows/ep1/index.m3u8", b"#EXTM3U\n")
    segment = publish(edge, "shows/ep1/seg-000.ts")
    sibling = publish(edge, "shows/ep10/seg-000.ts")  # shares the text, not the folder
    unnamed = publish(edge)
    query = share(prefix="shows/ep1/")

    for manifest, body in ((playlist, b"#EXTM3U\n"), (segment, DATA)):
        answer = get(edge, manifest, query)
        assert (answer.status_code, answer.content) == (200, body)
        # The URL names no version, so the client must revalidate its copy.
        assert answer.headers["Cache-Control"] == "private, no-cache"
    ranged = get(edge, segment, query, Range=f"bytes={CHUNK - 5}-{CHUNK + 4}")
    assert (ranged.status_code, ranged.content) == (206, DATA[CHUNK - 5 : CHUNK + 5])
    for manifest in (sibling, unnamed):
        assert refused(get(edge, manifest, query))


def test_a_prefix_share_follows_the_current_version(edge: EdgeServer) -> None:
    first = publish(edge, "live/seg.ts")
    query = share(prefix="live/")
    before = get(edge, first, query)
    assert before.content == DATA
    newer_data = os.urandom(500)
    newer = put_file(BUCKET, newer_data, CHUNK, first.file_id, name="live/seg.ts")
    edge.source.manifests[first.file_id] = replace(newer, version="2")
    assert edge.context is not None
    edge.context.manifests.forget(first.file_id)  # as the edge does after the refresh window
    after = get(edge, first, query)
    assert (after.status_code, after.content) == (200, newer_data)
    assert after.headers["ETag"] != before.headers["ETag"]


@pytest.mark.parametrize(
    "tamper",
    [
        {"pfx": "other/"},  # the signature covers the prefix
        {"v": "1"},  # a prefix share cannot pass as a share of one version
    ],
)
def test_prefix_shares_cannot_be_altered(edge: EdgeServer, tamper: dict[str, str]) -> None:
    manifest = publish(edge, "other/seg.ts")
    assert refused(get(edge, manifest, {**share(prefix="shows/"), **tamper}))


def test_prefix_and_ip_policies_combine(edge: EdgeServer) -> None:
    manifest = publish(edge, "hls/a/seg.ts")
    inside = get(edge, manifest, share(prefix="hls/", ip="127.0.0.0/8"))
    assert inside.status_code == 200
    assert refused(get(edge, manifest, share(prefix="hls/", ip="192.0.2.0/24")))


def test_x_forwarded_for_is_ignored_unless_a_proxy_is_trusted(edge: EdgeServer) -> None:
    manifest = publish(edge)
    query = share(manifest, ip="198.51.100.0/24")
    assert refused(get(edge, manifest, query, **{"X-Forwarded-For": "198.51.100.7"}))


@pytest.mark.parametrize(
    ("forwarded_for", "allowed"),
    [
        ("198.51.100.7", True),  # what the proxy saw
        ("203.0.113.9, 198.51.100.7", True),  # the client's own entry comes first
        ("198.51.100.7, 203.0.113.9", False),  # a forged entry left of the real one
        (None, False),  # no header: the client is unknown, fail closed
        ("not-an-address", False),
    ],
)
def test_behind_a_trusted_proxy_the_right_most_entry_is_the_client(
    behind_proxy: EdgeServer, forwarded_for: str | None, allowed: bool
) -> None:
    manifest = publish(behind_proxy)
    query = share(manifest, ip="198.51.100.0/24")
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    answer = get(behind_proxy, manifest, query, **headers)
    if allowed:
        assert (answer.status_code, answer.content) == (200, DATA)
    else:
        assert refused(answer), answer.text
    # Shares without an address range do not care where the client is.
    assert get(behind_proxy, manifest, share(manifest), **headers).status_code == 200
