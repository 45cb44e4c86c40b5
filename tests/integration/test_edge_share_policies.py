"""Share policies at the edge, over real HTTPS: client address ranges (``ip=``),
start times (``nbf=``), v2 file shares (any current version, or the one the redirect's
``v`` pins), and which address counts as the client's when a load balancer sits in
front.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import requests
from fsnode_core.signing import SharePolicy

from edge_node.manifest import Manifest
from tests.integration.edge_fixtures import EdgeServer, edge_on_moto
from tests.integration.edge_publishing import put_file, signer

BUCKET = "fsnode-edge-policies"
CHUNK = 64 * 1024
DATA = os.urandom(CHUNK + 100)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    with edge_on_moto(tmp_path_factory, BUCKET) as server:
        yield server


@pytest.fixture
def behind_proxy(edge: EdgeServer) -> Iterator[EdgeServer]:
    """The edge told that one proxy in front appends the client to X-Forwarded-For."""
    assert edge.context is not None
    edge.context.trusted_proxy_hops = 1
    try:
        yield edge
    finally:
        edge.context.trusted_proxy_hops = 0


def publish(edge: EdgeServer, data: bytes = DATA) -> Manifest:
    return put_file(BUCKET, data, CHUNK)


def share(
    manifest: Manifest,
    *,
    not_before: int | None = None,
    ip: str | None = None,
    pinned: bool = True,
) -> dict[str, str]:
    """A file share's query as the redirect sends it: pinned to the manifest's version
    (``pinned=False``: as minted, any current version)."""
    expires = int(time.time()) + 600
    query = signer().sign(SharePolicy(manifest.file_id, expires, not_before, ip))
    return {**query, "v": manifest.version} if pinned else query


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


def test_a_share_without_a_pin_follows_the_current_version(edge: EdgeServer) -> None:
    first = publish(edge)
    query = share(first, pinned=False)
    before = get(edge, first, query)
    assert (before.status_code, before.content) == (200, DATA)
    # The URL names no version: a new one may replace the bytes, so the client revalidates.
    assert before.headers["Cache-Control"] == "private, no-cache"
    pinned = get(edge, first, share(first))
    assert pinned.headers["Cache-Control"].startswith("private, max-age=")
    newer_data = os.urandom(500)
    put_file(BUCKET, newer_data, CHUNK, first.file_id, path=first.path, version="2" * 32)
    assert edge.context is not None
    edge.context.manifests.distrust_all()  # as once the bound has passed: the head is read again
    after = get(edge, first, query)
    assert (after.status_code, after.content) == (200, newer_data)
    assert after.headers["ETag"] != before.headers["ETag"]
    # A player that began on the first version is not handed the second one's bytes.
    stale = get(edge, first, share(first))
    assert stale.status_code == 410 and stale.json()["error"]["code"] == "gone"


@pytest.mark.parametrize(
    "tamper",
    [
        {"pfx": "other/"},  # v1 prefix shares are gone; nothing undefined passes
        {"v": "not-a-version"},
        {"f": "x"},
    ],
)
def test_shares_cannot_be_altered(edge: EdgeServer, tamper: dict[str, str]) -> None:
    manifest = publish(edge)
    assert refused(get(edge, manifest, {**share(manifest), **tamper}))


def test_ip_and_start_policies_combine(edge: EdgeServer) -> None:
    manifest = publish(edge)
    now = int(time.time())
    inside = get(edge, manifest, share(manifest, ip="127.0.0.0/8", not_before=now - 5))
    assert inside.status_code == 200
    assert refused(get(edge, manifest, share(manifest, ip="192.0.2.0/24")))
    assert refused(get(edge, manifest, share(manifest, ip="127.0.0.0/8", not_before=now + 300)))


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
