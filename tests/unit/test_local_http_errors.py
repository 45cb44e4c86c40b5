"""The local control-plane server's parser refusals (issue 17.7): ``HTTP/2.0`` is 505,
an unreadable request 400, both in the JSON error shape, and neither the answer nor the
server's log quotes the request line (its query may be a share's signature).

A small Chalice app served by ``chalice local`` on loopback with
``fsnode.localstack.http_errors`` installed, as the local stack's API server runs.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
from chalice import Chalice
from chalice.config import Config
from chalice.local import create_local_server

from fsnode.localstack import http_errors, processes

SECRET = "c2VjcmV0LXNpZ25hdHVyZQ"
app = Chalice(app_name="http-errors-test")


@app.route("/s/{file_id}")
def share(file_id: str) -> dict[str, str]:
    return {"file_id": file_id}


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    http_errors.install()
    http_errors.install()  # twice is once
    free = processes.free_port()
    server = create_local_server(app, Config.create(chalice_stage="local"), "127.0.0.1", free)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield free
    server.shutdown()


def exchange(port: int, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        answer = b""
        while data := sock.recv(65536):  # the server closes after an error
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return lines[0], headers, body


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (f"GET /s/x?sig={SECRET} HTTP/2.0\r\nHost: a\r\n\r\n", 505, "http_version_not_supported"),
        (f"GET /s/x?sig={SECRET} HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400, "invalid_input"),
        (f"GET /s/x?sig={SECRET} HTTQ/1.1\r\nHost: a\r\n\r\n", 400, "invalid_input"),
        (f"GET /s/x?sig={SECRET} HTTP/1.x\r\nHost: a\r\n\r\n", 400, "invalid_input"),
    ],
    ids=["http-2.0", "bad-syntax", "bad-protocol", "bad-version"],
)
def test_parser_refusals_are_json_and_quote_nothing(
    port: int, raw: str, status: int, code: str, capfd: pytest.CaptureFixture[str]
) -> None:
    status_line, headers, body = exchange(port, raw.encode())
    assert status_line.split()[1] == str(status)
    assert headers["content-type"] == "application/json"
    document = json.loads(body)
    assert document["error"]["code"] == code and document["error"]["message"]
    assert SECRET not in status_line and SECRET not in body.decode()
    assert SECRET not in capfd.readouterr().err


def test_requests_the_parser_takes_still_reach_the_app(port: int) -> None:
    status_line, _, body = exchange(port, b"GET /s/abc HTTP/1.0\r\nHost: a\r\n\r\n")
    assert status_line.split()[1] == "200" and json.loads(body) == {"file_id": "abc"}
