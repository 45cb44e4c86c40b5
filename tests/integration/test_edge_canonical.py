"""Canonical requests at the edge (issue 17.7), over real TLS sockets: exact bytes on the
wire, so the HTTP parser's refusals are exercised too.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from fsnode_core.signing import SharePolicy

from edge_node.manifest import Manifest
from tests.integration.edge_fixtures import EdgeServer, edge_on_moto
from tests.integration.edge_publishing import put_file, share_query, signer

BUCKET = "fsnode-edge-canonical"
CHUNK = 64 * 1024
DATA = os.urandom(CHUNK + 100)
SECRET = "Zm9yZ2V0LW1lLW5vdA"  # stands for a share signature: must never be echoed


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    # One trusted proxy: the client address comes from X-Forwarded-For, so a test
    # can be an IPv4 client seen through a dual-stack proxy (::ffff:a.b.c.d).
    with edge_on_moto(tmp_path_factory, BUCKET, trusted_proxy_hops=1) as server:
        yield server


@pytest.fixture(scope="module")
def manifest(edge: EdgeServer) -> Manifest:
    published = put_file(BUCKET, DATA, CHUNK)
    return published


def exchange(edge: EdgeServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a fresh TLS connection; the first answer's status, headers, body."""
    plain = socket.create_connection(("127.0.0.1", edge.port), timeout=30)
    with edge.client_ssl().wrap_socket(plain, server_hostname="127.0.0.1") as sock:
        sock.sendall(raw)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(65536)
            assert data, f"closed without an answer: {buffer!r}"
            buffer += data
        head, _, body = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        length = int(headers["content-length"])
        while len(body) < length:
            data = sock.recv(65536)
            assert data, "closed mid-answer"
            body += data
    return int(lines[0].split()[1]), headers, body[:length]


def get(target: str, version: str = "HTTP/1.1", extra: str = "") -> bytes:
    return f"GET {target} {version}\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def error_of(body: bytes) -> dict[str, str]:
    document = json.loads(body)
    assert set(document) == {"error"}
    return dict(document["error"])


def test_http_2_0_on_the_request_line_is_505(edge: EdgeServer, manifest: Manifest) -> None:
    target = f"/f/{manifest.file_id}?{urlencode(share_query(manifest.file_id, None))}"
    assert exchange(edge, get(target))[0] == 200
    status, headers, body = exchange(edge, get(target, "HTTP/2.0"))
    assert status == 505
    assert headers["content-type"].startswith("application/json")
    assert error_of(body)["code"] == "http_version_not_supported"


@pytest.mark.parametrize("repeat", ["exp", "sig", "v", "x"])
def test_a_repeated_query_parameter_is_refused(
    edge: EdgeServer, manifest: Manifest, repeat: str
) -> None:
    query = share_query(manifest.file_id, manifest.version)
    value = query.get(repeat, "1")
    twice = "" if repeat in query else f"&{repeat}={value}"
    target = f"/f/{manifest.file_id}?{urlencode(query)}&{repeat}={value}{twice}"
    status, _, body = exchange(edge, get(target))
    assert status == 400, body
    error = error_of(body)
    assert error["code"] == "invalid_input"
    assert f"'{repeat}' appears more than once" in error["message"]


@pytest.mark.parametrize(
    "target",
    [
        "/f/{id}%00",
        "/f/{id}?{query}&note=a%0Ab",
        "/f/{id}?{query}&note=%7F",
        "/f/{id}?{query}&a%01=b",
    ],
    ids=["nul-in-path", "newline-in-query", "del-in-query", "control-in-a-name"],
)
def test_control_characters_are_refused(edge: EdgeServer, manifest: Manifest, target: str) -> None:
    query = urlencode(share_query(manifest.file_id, None))
    status, _, body = exchange(edge, get(target.format(id=manifest.file_id, query=query)))
    assert status == 400
    assert error_of(body)["code"] == "invalid_input"


@pytest.mark.parametrize(
    "raw",
    [
        get(f"/f/x?sig={SECRET}", extra="Bad Header\r\n"),  # a header without a colon
        get(f"/f/x?sig={SECRET}\x01"),  # a raw control character in the target
        get(f"/f/x?sig={SECRET}", "HTTP/3.1"),  # a version the parser refuses
        f"GET /f/x?sig={SECRET}\r\n\r\n".encode(),  # no version at all
        get(f"/f/x?sig={SECRET}&pad={'a' * 10_000}"),  # a request line too long
        get(f"/f/x?sig={SECRET}", extra=f"X-Big: {'b' * 10_000}\r\n"),  # a header too long
    ],
    ids=["bad-header", "raw-control", "bad-version", "no-version", "long-line", "long-header"],
)
def test_parser_errors_answer_json_and_never_echo_the_request(
    edge: EdgeServer, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, headers, body = exchange(edge, raw)
    assert headers["content-type"].startswith("application/json")
    error = error_of(body)
    # No version at all reads as HTTP/0.9, which is not served either.
    assert (status, error["code"]) in {(400, "invalid_input"), (505, "http_version_not_supported")}
    assert SECRET not in body.decode()
    assert "sig=" not in body.decode()
    assert SECRET not in caplog.text


def test_an_ip_share_for_a_mapped_ipv4_client_matches_that_client(
    edge: EdgeServer, manifest: Manifest
) -> None:
    """A dual-stack proxy reports an IPv4 client as ``::ffff:a.b.c.d``: an IPv4 share
    admits it, and refuses another IPv4 client spelled the same way."""
    policy = SharePolicy(manifest.file_id, int(time.time()) + 600, ip="192.0.2.0/24")
    target = f"/f/{manifest.file_id}?{urlencode(signer().sign(policy))}"
    inside = exchange(edge, get(target, extra="X-Forwarded-For: ::ffff:192.0.2.7\r\n"))
    assert inside[0] == 200 and inside[2] == DATA
    assert exchange(edge, get(target, extra="X-Forwarded-For: 192.0.2.7\r\n"))[0] == 200
    outside = exchange(edge, get(target, extra="X-Forwarded-For: ::ffff:198.51.100.7\r\n"))
    assert outside[0] == 403
    assert error_of(outside[2])["code"] == "forbidden"
