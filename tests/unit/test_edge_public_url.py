"""The edge container's entrypoint: public address from IMDSv2, then ``python -m edge_node``.

A real HTTP server on loopback plays the instance metadata service, strictly: no
token, no answer (401), as IMDSv2 with ``HttpTokens: required`` behaves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edge_node import discover_public_url as entry

REPO = Path(__file__).resolve().parents[2]
TOKEN = "fake-imds-token"


@dataclass
class FakeImds:
    hostname: str | None = "ec2-203-0-113-7.compute-1.amazonaws.com"
    ipv4: str | None = "203.0.113.7"
    unavailable_first: int = 0
    requests: list[str] = field(default_factory=list)
    url: str = ""


def _handler(imds: FakeImds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: str = "") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            imds.requests.append(f"PUT {self.path}")
            if imds.unavailable_first > 0:
                imds.unavailable_first -= 1
                self._send(503)
            elif self.path == "/latest/api/token" and self.headers.get(
                "X-aws-ec2-metadata-token-ttl-seconds"
            ):
                self._send(200, TOKEN)
            else:
                self._send(400)

        def do_GET(self) -> None:
            imds.requests.append(f"GET {self.path}")
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                self._send(401)
                return
            value = {
                "/latest/meta-data/public-hostname": imds.hostname,
                "/latest/meta-data/public-ipv4": imds.ipv4,
            }.get(self.path)
            self._send(200, value) if value is not None else self._send(404)

    return Handler


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    fake = FakeImds()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def _env(imds: FakeImds, **extra: str) -> dict[str, str]:
    return {
        entry.SOURCE_VARIABLE: entry.EC2_METADATA,
        entry.ENDPOINT_VARIABLE: imds.url,
        **extra,
    }


def test_public_hostname_becomes_the_endpoint_on_443(imds: FakeImds) -> None:
    env = _env(imds)
    entry.prepare_environment(env)
    assert env["FSNODE_EDGE_PUBLIC_URL"] == "https://ec2-203-0-113-7.compute-1.amazonaws.com:443"
    # IMDSv2: the token first, then a read that carries it.
    assert imds.requests[:2] == ["PUT /latest/api/token", "GET /latest/meta-data/public-hostname"]


def test_public_ipv4_when_there_is_no_dns_name_and_the_port_setting(imds: FakeImds) -> None:
    imds.hostname = None
    env = _env(imds, FSNODE_EDGE_PUBLIC_PORT="8443")
    entry.prepare_environment(env)
    assert env["FSNODE_EDGE_PUBLIC_URL"] == "https://203.0.113.7:8443"


def test_no_public_address_is_an_error_naming_the_fix(imds: FakeImds) -> None:
    imds.hostname = imds.ipv4 = None
    with pytest.raises(entry.DiscoveryError, match="public subnet"):
        entry.prepare_environment(_env(imds))


def test_a_briefly_unavailable_metadata_service_is_retried(imds: FakeImds) -> None:
    imds.unavailable_first = 1
    assert entry.public_host(imds.url, attempts=2) == imds.hostname
    assert imds.requests.count("PUT /latest/api/token") == 2


def test_an_unreachable_metadata_service_gives_up(imds: FakeImds) -> None:
    closed = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(entry.DiscoveryError, match="unreachable"):
        entry.public_host(closed, attempts=2, timeout=0.5)


def test_explicit_url_wins_and_no_source_means_no_lookup(imds: FakeImds) -> None:
    env = _env(imds, FSNODE_EDGE_PUBLIC_URL="https://edge.example:443")
    entry.prepare_environment(env)
    plain = {entry.ENDPOINT_VARIABLE: imds.url}
    entry.prepare_environment(plain)
    assert env["FSNODE_EDGE_PUBLIC_URL"] == "https://edge.example:443"
    assert "FSNODE_EDGE_PUBLIC_URL" not in plain and imds.requests == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({entry.SOURCE_VARIABLE: "dns"}, "must be 'ec2-metadata'"),
        ({"FSNODE_EDGE_PUBLIC_PORT": "https"}, "port number"),
    ],
)
def test_bad_settings_exit_2(
    imds: FakeImds, extra: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def never(*_args: object) -> object:
        raise AssertionError("the edge must not start")

    assert entry.main([], _env(imds, **extra), execute=never) == 2
    assert message in capsys.readouterr().err


def test_main_runs_the_edge_with_the_discovered_url(imds: FakeImds) -> None:
    calls: list[tuple[str, list[str], dict[str, str]]] = []

    def record(path: str, args: Sequence[str], env: Mapping[str, str]) -> object:
        calls.append((path, list(args), dict(env)))
        return None

    assert entry.main(["--flag"], _env(imds, KEEP="1"), execute=record) == 0
    ((path, args, env),) = calls
    assert path == sys.executable and args == [sys.executable, "-m", "edge_node", "--flag"]
    assert env["FSNODE_EDGE_PUBLIC_URL"].startswith("https://ec2-203-0-113-7.")
    assert env["KEEP"] == "1"


def test_the_module_really_becomes_the_edge(imds: FakeImds) -> None:
    # No FSNODE_API_URL: the edge itself (not the entrypoint) refuses to start.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FSNODE_") and key != entry.ENDPOINT_VARIABLE
    }
    env.update(_env(imds), PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'layers'}")
    result = subprocess.run(
        [sys.executable, "-m", "edge_node.discover_public_url"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "edge public url https://ec2-203-0-113-7.compute-1.amazonaws.com:443" in result.stderr
    assert "FSNODE_API_URL" in result.stderr
