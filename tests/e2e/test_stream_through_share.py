"""End to end: upload, share, follow the redirect to an edge, read ranges over TLS."""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from fsnode.localstack.stack import StackInfo
from tests.e2e.conftest import run_cli
from tests.helpers import wait_for

SIZE = 20 * 1024 * 1024
CHUNK = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "random.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


@pytest.fixture(scope="module")
def uploaded(stack: StackInfo, original: Path) -> dict[str, str]:
    result = run_cli("upload", str(original), "--share", "--json", "--state-dir", stack.state_dir)
    assert result.returncode == 0, result.stderr
    answer: dict[str, str] = json.loads(result.stdout)
    assert set(answer) >= {"id", "share_url"}
    return answer


def _edge_url(stack: StackInfo, share_url: str) -> str:
    response = requests.get(share_url, allow_redirects=False, timeout=30)
    assert response.status_code == 307, response.text
    location = response.headers["Location"]
    assert any(location.startswith(edge.url + "/") for edge in stack.edges), location
    return location


def test_share_url_streams_every_range_byte_for_byte(
    stack: StackInfo, original: Path, uploaded: dict[str, str]
) -> None:
    data = original.read_bytes()
    url = _edge_url(stack, uploaded["share_url"])
    session = requests.Session()

    def get(range_header: str | None) -> requests.Response:
        headers = {"Range": range_header} if range_header else {}
        # verify per request: requests lets REQUESTS_CA_BUNDLE override Session.verify.
        return session.get(url, headers=headers, verify=stack.ca_cert, timeout=60)

    first = get("bytes=0-0")
    assert first.status_code == 206
    assert first.content == data[:1]
    assert first.headers["Content-Range"] == f"bytes 0-0/{SIZE}"
    assert first.headers["Accept-Ranges"] == "bytes"

    start, end = CHUNK - 100, CHUNK + 99  # across the first chunk boundary
    across = get(f"bytes={start}-{end}")
    assert across.status_code == 206
    assert across.content == data[start : end + 1]
    assert across.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"

    suffix = get("bytes=-1000")
    assert suffix.status_code == 206
    assert suffix.content == data[-1000:]
    assert suffix.headers["Content-Range"] == f"bytes {SIZE - 1000}-{SIZE - 1}/{SIZE}"

    whole = get(None)
    assert whole.status_code == 200
    assert int(whole.headers["Content-Length"]) == SIZE
    assert whole.content == data

    unsatisfiable = get(f"bytes={SIZE}-")
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["Content-Range"] == f"bytes */{SIZE}"

    # The second read of the file is served from the edge's disk cache.
    assert get(None).content == data


def test_redirect_through_a_client_that_follows_it(
    stack: StackInfo, original: Path, uploaded: dict[str, str]
) -> None:
    response = requests.get(
        uploaded["share_url"], headers={"Range": "bytes=100-199"}, verify=stack.ca_cert, timeout=60
    )
    assert response.status_code == 206
    assert response.content == original.read_bytes()[100:200]


def _tamper(url: str, **changes: str) -> str:
    parts = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunparse(parts._replace(query=urlencode(query)))


@pytest.mark.parametrize(
    "changes",
    [{"sig": "AAAA"}, {"exp": "4102444800"}, {"v": "999"}, {"kid": "nope"}],
    ids=["forged-signature", "extended-expiry", "other-version", "unknown-key"],
)
def test_tampered_share_urls_are_refused_with_json(
    stack: StackInfo, uploaded: dict[str, str], changes: dict[str, str]
) -> None:
    share = _tamper(uploaded["share_url"], **changes)
    at_api = requests.get(share, allow_redirects=False, timeout=30)
    edge = _tamper(_edge_url(stack, uploaded["share_url"]), **changes)
    at_edge = requests.get(edge, verify=stack.ca_cert, timeout=30)

    for response in (at_api, at_edge):
        assert response.status_code == 403, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["error"]["code"] == "forbidden"


def test_expired_share_url_is_refused(stack: StackInfo, uploaded: dict[str, str]) -> None:
    result = run_cli(
        "share", uploaded["id"], "--ttl", "1", "--json", "--state-dir", stack.state_dir
    )
    assert result.returncode == 0, result.stderr
    share = json.loads(result.stdout)
    share_url = share["share_url"]
    # The clocks of this test and of the servers are the same machine's.
    wait_for(lambda: time.time() >= share["expires"], "the share's expiry to pass")

    response = requests.get(share_url, allow_redirects=False, timeout=30)

    assert response.status_code == 403
    assert "expired" in response.json()["error"]["message"]


def test_edge_certificates_chain_to_the_private_ca_and_name_the_edge(stack: StackInfo) -> None:
    root = x509.load_pem_x509_certificate(Path(stack.ca_cert).read_bytes())
    for edge in stack.edges:
        host, port = urlparse(edge.url).hostname, urlparse(edge.url).port
        assert host is not None and port is not None
        # A handshake that verifies the chain and the host against the root only.
        context = ssl.create_default_context(cafile=stack.ca_cert)
        with context.wrap_socket(
            socket.create_connection((host, port), timeout=10),
            server_hostname=host,
        ) as tls:
            der = tls.getpeercert(binary_form=True)
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert der is not None
        leaf = x509.load_der_x509_certificate(der)
        assert leaf.issuer == root.subject
        # The local CA's key is RSA (PKCS#1 v1.5), and its signatures name their hash.
        cast(rsa.RSAPublicKey, root.public_key()).verify(
            leaf.signature,
            leaf.tbs_certificate_bytes,
            padding.PKCS1v15(),
            cast(hashes.HashAlgorithm, leaf.signature_hash_algorithm),
        )
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == [host]
        assert names.get_values_for_type(x509.DNSName) == []


def test_cli_lists_the_stack_nodes(stack: StackInfo) -> None:
    result = run_cli("nodes", "--json", "--state-dir", stack.state_dir)
    assert result.returncode == 0, result.stderr
    nodes = {n["node_id"]: n for n in json.loads(result.stdout)["nodes"]}
    assert {edge.node_id for edge in stack.edges} <= set(nodes)
    assert all(nodes[edge.node_id]["status"] == "active" for edge in stack.edges)
