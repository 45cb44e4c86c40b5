"""Client downloads over real sockets: failover, SHA-256 checks, resume, a plan in
pages, ``plan --json``, and share downloads that never mix two versions.

A small local HTTP server plays the control plane's ``plan`` route and the byte sources
(a healthy one that honours Range, one that serves corrupt bytes, an edge with an ETag
that honours If-Match, one whose version changes mid-download); a closed port plays a
dead edge.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fsnode import cli
from fsnode.api import ApiError, check_file_id
from fsnode.client import FsnodeClient
from fsnode.download import DownloadError, VersionChanged, download_file, download_share
from fsnode.settings import ClientSettings

FILE_ID = "ab" * 16
CHUNK = 64 * 1024
DATA = os.urandom(5 * CHUNK + 100)


class Handler(BaseHTTPRequestHandler):
    plan: dict[str, Any] = {}
    page_chunks = 0  # > 0: the plan comes in pages of this many chunks
    hits: dict[str, int] = {}
    etag = '"v1"'  # what /edge answers with; /flip answers v2 after its first answer

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        Handler.hits[path] = Handler.hits.get(path, 0) + 1
        if path == f"/files/{FILE_ID}/plan":
            self._send(200, json.dumps(self._plan_page(query)).encode(), "application/json")
        elif path in ("/good", "/corrupt"):
            first, last = self.headers["Range"].removeprefix("bytes=").split("-")
            body = DATA[int(first) : int(last) + 1]
            if path == "/corrupt":
                body = bytes(b ^ 0xFF for b in body)
            self._send(206, body, "application/octet-stream")
        elif path == "/share":
            self.send_response(307)
            self.send_header("Location", "/edge?v=1")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path in ("/edge", "/flip"):
            etag = '"v2"' if path == "/flip" and Handler.hits[path] > 1 else Handler.etag
            wanted = self.headers.get("If-Match")
            if path == "/edge" and wanted is not None and wanted != etag:
                self._send(412, b'{"error": {"code": "precondition_failed"}}', "application/json")
                return
            first, last = self.headers["Range"].removeprefix("bytes=").split("-")
            body = DATA[int(first) : int(last) + 1]
            self._send(
                206,
                body,
                "application/octet-stream",
                {"ETag": etag, "Content-Range": f"bytes {first}-{last}/{len(DATA)}"},
            )
        else:
            self._send(
                404, b'{"error": {"code": "not_found", "message": "no"}}', "application/json"
            )

    def _plan_page(self, query: str) -> dict[str, Any]:
        if not Handler.page_chunks:
            return Handler.plan
        offset = int(dict(p.split("=") for p in query.split("&") if p).get("offset", "0"))
        first = offset // CHUNK
        chunks = Handler.plan["chunks"][first : first + Handler.page_chunks]
        after = (first + len(chunks)) * CHUNK
        return {
            **Handler.plan,
            "chunks": chunks,
            "next_offset": after if after < len(DATA) else None,
        }

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.hits, Handler.page_chunks, Handler.etag = {}, 0, '"v1"'
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def dead_url() -> str:
    """A port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/dead"


def make_plan(base: str, dead: str, *, with_hashes: bool = True) -> dict[str, Any]:
    """A plan in the control plane's compact shape: edges once, chunks by index."""
    chunks = []
    for index, offset in enumerate(range(0, len(DATA), CHUNK)):
        piece = DATA[offset : offset + CHUNK]
        chunks.append({
            "index": index, "offset": offset, "length": len(piece),
            "sha256": hashlib.sha256(piece).hexdigest() if with_hashes else None,
            "replicas": [0, 1, 2],
        })  # fmt: skip
    return {"file_id": FILE_ID, "version": "v1", "size": len(DATA), "chunk_size": CHUNK,
            "etag": "e", "expires": 0, "s3_url": f"{base}/good", "next_offset": None,
            "nodes": [{"node_id": "dead", "url": dead},
                      {"node_id": "corrupt", "url": f"{base}/corrupt"},
                      {"node_id": "good", "url": f"{base}/good"}],
            "chunks": chunks}  # fmt: skip


def client_for(base: str) -> FsnodeClient:
    return FsnodeClient(ClientSettings(api_url=base, api_key="k", ca_cert=None), workers=2,
                        edge_timeout=2)  # fmt: skip


def test_fails_over_past_dead_and_corrupt_replicas(
    server: str, dead_url: str, tmp_path: Path
) -> None:
    Handler.plan = make_plan(server, dead_url)
    out = tmp_path / "out.bin"
    result = download_file(client_for(server), FILE_ID, out)
    assert out.read_bytes() == DATA
    assert result.sources == {"good": 6}
    assert result.failovers == 12  # each chunk: dead, then corrupt, then good
    assert not (tmp_path / "out.bin.part").exists()
    assert not (tmp_path / "out.bin.part.json").exists()


def test_falls_back_to_s3_when_no_replica_serves(
    server: str, dead_url: str, tmp_path: Path
) -> None:
    plan = make_plan(server, dead_url)
    for chunk in plan["chunks"]:
        chunk["replicas"] = [0, 1]  # dead, corrupt
    Handler.plan = plan
    out = tmp_path / "out.bin"
    result = download_file(client_for(server), FILE_ID, out)
    assert out.read_bytes() == DATA
    assert result.sources == {"s3": 6}


def test_without_hashes_corrupt_bytes_cannot_be_caught(
    server: str, dead_url: str, tmp_path: Path
) -> None:
    # An imported file before its hashes are recorded: the first answer is taken as is.
    Handler.plan = make_plan(server, dead_url, with_hashes=False)
    result = download_file(client_for(server), FILE_ID, tmp_path / "out.bin")
    assert result.sources == {"corrupt": 6}


def test_all_sources_failing_is_an_error_naming_them(
    server: str, dead_url: str, tmp_path: Path
) -> None:
    plan = make_plan(server, dead_url)
    for chunk in plan["chunks"]:
        chunk["replicas"] = [0, 1]
    plan["s3_url"] = None
    Handler.plan = plan
    with pytest.raises(DownloadError, match=r"dead: ConnectionError; corrupt: SHA-256 mismatch"):
        download_file(client_for(server), FILE_ID, tmp_path / "out.bin")


def test_partial_download_resumes_only_missing_chunks(
    server: str, dead_url: str, tmp_path: Path
) -> None:
    Handler.plan = make_plan(server, dead_url)
    out = tmp_path / "out.bin"
    client = FsnodeClient(ClientSettings(api_url=server, api_key="k", ca_cert=None), workers=1)
    with pytest.raises(DownloadError, match="test hook"):
        download_file(client, FILE_ID, out, stop_after_chunks=4)
    assert json.loads((tmp_path / "out.bin.part.json").read_text())["done"] == [0, 1, 2, 3]
    Handler.hits = {}

    result = download_file(client, FILE_ID, out)
    assert (result.resumed, result.fetched) == (4, 2)
    assert Handler.hits["/good"] == 2
    assert out.read_bytes() == DATA


def test_a_new_version_restarts_a_partial_download(
    server: str, dead_url: str, tmp_path: Path
) -> None:
    Handler.plan = make_plan(server, dead_url)
    out = tmp_path / "out.bin"
    client = FsnodeClient(ClientSettings(api_url=server, api_key="k", ca_cert=None), workers=1)
    with pytest.raises(DownloadError):
        download_file(client, FILE_ID, out, stop_after_chunks=3)
    Handler.plan = {**make_plan(server, dead_url), "version": "v2"}
    result = download_file(client, FILE_ID, out)
    assert (result.resumed, result.fetched) == (0, 6)
    assert out.read_bytes() == DATA


def test_a_plan_in_pages_is_read_whole(server: str, dead_url: str, tmp_path: Path) -> None:
    Handler.plan = make_plan(server, dead_url)
    Handler.page_chunks = 4
    out = tmp_path / "out.bin"
    result = download_file(client_for(server), FILE_ID, out)
    assert out.read_bytes() == DATA and result.chunks == 6
    assert Handler.hits[f"/files/{FILE_ID}/plan"] == 2


def test_a_share_download_asks_for_the_first_answers_version(server: str, tmp_path: Path) -> None:
    out = tmp_path / "share.bin"
    result = download_share(f"{server}/share", out, ca_cert=None, workers=2, timeout=5)
    assert out.read_bytes() == DATA and result.size == len(DATA)


def test_a_share_replaced_mid_download_is_an_error_not_a_mixed_file(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fsnode import download

    monkeypatch.setattr(download, "SHARE_PIECE", CHUNK)  # several pieces
    # A server that honours If-Match: 412 once the version changed.
    Handler.etag = '"v1"'
    real = download._fetch_piece
    calls: list[int] = []

    def replace_after_first(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            Handler.etag = '"v2"'  # a new version is published mid-download
        return real(*args)

    monkeypatch.setattr(download, "_fetch_piece", replace_after_first)
    with pytest.raises(VersionChanged):
        download_share(f"{server}/share", tmp_path / "a.bin", ca_cert=None, workers=1, timeout=5)
    assert not (tmp_path / "a.bin").exists()
    # A server that ignores If-Match: the answer's other ETag is caught all the same.
    monkeypatch.setattr(download, "_fetch_piece", real)
    Handler.etag = '"v1"'  # /flip answers this first, then v2
    with pytest.raises(VersionChanged):
        download_share(f"{server}/flip", tmp_path / "b.bin", ca_cert=None, workers=1, timeout=5)
    assert not (tmp_path / "b.bin").exists()


def test_plan_json_lists_replica_node_ids(
    server: str, dead_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Handler.plan = make_plan(server, dead_url)
    assert cli.main(["plan", FILE_ID, "--json", "--api-url", server, "--api-key", "k"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [c["index"] for c in answer["chunks"]] == list(range(6))
    assert all(c["replicas"] == ["dead", "corrupt", "good"] for c in answer["chunks"])
    assert answer["file_id"] == FILE_ID and answer["size"] == len(DATA)


def test_api_errors_exit_1_with_the_error_as_json(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["plan", "cd" * 16, "--json", "--api-url", server, "--api-key", "k"])
    assert code == 1
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "not_found"


@pytest.mark.parametrize("bad", ["../etc", "AB" * 16, "ab" * 15, "ab" * 16 + "/x", ""])
def test_malformed_ids_never_reach_a_url(bad: str) -> None:
    with pytest.raises(ApiError) as info:
        check_file_id(bad)
    assert info.value.code == "invalid_input"
