"""Folder shares at the control plane (``POST /shares``, ``GET|HEAD /t/{TOKEN}/...``) and
the origin fallback of file and folder shares when no edge can take a viewer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import requests
from fsnode_core.digests import entity_tag
from fsnode_core.models import NODE_ACTIVE, NODE_DRAINING
from fsnode_core.nodes_store import NodeRegistry
from fsnode_core.paths import url_path

from tests.integration.control_plane_helpers import (
    error_of,
    live_node,
    put_import_object,
    register,
    send_heartbeat,
    unique_path,
    upload,
)

PLAYLIST = b"#EXTM3U\n#EXT-X-VERSION:7\n#EXTINF:4.0,\nseg000.m4s\n#EXT-X-ENDLIST\n"


def _folder_share(api: Any, prefix: str, **extra: Any) -> str:
    answer = api.call("POST", "/shares", {"prefix": prefix, "ttl_seconds": 600, **extra})
    assert answer.status_code == 200, answer.body
    return str(answer.json_body["share_url"]).removeprefix("http://control.test")


@pytest.fixture()
def hls(cp_api: Any) -> dict[str, Any]:
    """A two-file HLS folder (and a sibling folder whose name extends it)."""
    folder = unique_path("trailer") + "/"
    master, _ = upload(
        cp_api, PLAYLIST, path=f"{folder}hi/index.m3u8", extra={"content_type": None}
    )
    segment_data = os.urandom(3000)
    segment, _ = upload(
        cp_api, segment_data, path=f"{folder}hi/seg000.m4s", extra={"content_type": None}
    )
    upload(cp_api, b"sibling", path=folder.rstrip("/") + "2/hi/index.m3u8")
    return {"folder": folder, "master": master, "segment": segment, "segment_data": segment_data}


@pytest.fixture()
def no_edges(cp_stack: Any) -> Iterator[NodeRegistry]:
    """Every active node drained (placement skips them) for one test, then restored."""
    registry = NodeRegistry(cp_stack.env["FSNODE_NODES_TABLE"], boto3.client("dynamodb"))
    active = [n.node_id for n in registry.list_nodes() if n.status == NODE_ACTIVE]
    for node_id in active:
        registry.set_status(node_id, NODE_DRAINING, expected=NODE_ACTIVE)
    try:
        yield registry
    finally:
        for node_id in active:
            registry.set_status(node_id, NODE_ACTIVE, expected=NODE_DRAINING)


def test_a_folder_share_lists_its_folder_and_only_it(cp_api: Any, hls: dict[str, Any]) -> None:
    folder = hls["folder"]
    share = _folder_share(cp_api, folder)
    assert share.endswith("/") and share.startswith("/t/")
    assert share.endswith("/" + url_path(folder))
    for method in ("GET", "HEAD"):
        answer = cp_api.call(method, share, key=False)
        assert answer.status_code == 200, answer.body
        assert answer.headers["Content-Type"] == "application/json"
    listing = cp_api.call("GET", share, key=False).json_body
    assert listing["prefix"] == folder and listing["next_token"] is None
    files = {f["path"]: f for f in listing["files"]}
    assert set(files) == {"hi/index.m3u8", "hi/seg000.m4s"}  # not the sibling folder
    segment = files["hi/seg000.m4s"]
    assert segment["content_type"] == "video/iso.segment" and segment["size"] == 3000
    record = cp_api.call("GET", f"/files/{hls['segment']['file_id']}").json_body
    assert segment["etag"] == entity_tag(
        record["file_id"], record["version"], record["etag"], record["size"]
    )
    assert files["hi/index.m3u8"]["content_type"] == "application/vnd.apple.mpegurl"
    first = cp_api.call("GET", share + "?limit=1", key=False).json_body
    assert len(first["files"]) == 1 and first["next_token"]
    rest = cp_api.call("GET", f"{share}?next_token={first['next_token']}", key=False).json_body
    assert [f["path"] for f in first["files"] + rest["files"]] == sorted(files)


def test_files_under_a_folder_redirect_to_one_edge_keeping_the_path(
    cp_api: Any, cp_stack: Any, hls: dict[str, Any]
) -> None:
    for _ in range(3):
        live_node(cp_api, cp_stack)
    share = _folder_share(cp_api, hls["folder"])
    token = share.split("/")[2]
    edges = set()
    for relative in ("hi/index.m3u8", "hi/seg000.m4s", "hi/seg999.m4s"):
        for method in ("GET", "HEAD"):
            answer = cp_api.call(method, share + relative, key=False)
            assert answer.status_code == 307, answer.body
            location = urlsplit(answer.headers["Location"])
            # The same path form: relative URLs in the playlist resolve under the token.
            assert location.path == f"/t/{token}/{url_path(hls['folder'] + relative)}"
            edges.add(location.netloc)
    assert len(edges) == 1  # placed by folder: a stream stays on one edge


def test_a_folder_token_is_signed_over_its_policy(cp_api: Any, hls: dict[str, Any]) -> None:
    share = _folder_share(cp_api, hls["folder"], ip="10.0.0.0/8")
    # The test client comes from 127.0.0.1.
    answer = cp_api.call("GET", share, key=False)
    assert answer.status_code == 403 and error_of(answer)["code"] == "forbidden"
    mine = _folder_share(cp_api, hls["folder"], ip="127.0.0.0/8")
    assert cp_api.call("GET", mine, key=False).status_code == 200
    later = _folder_share(cp_api, hls["folder"], not_before=2**40)
    assert cp_api.call("GET", later, key=False).status_code == 403
    everything = _folder_share(cp_api, "")
    assert everything.endswith("/") and everything.count("/") == 3
    listed = cp_api.call("GET", everything + "?limit=1000", key=False)
    assert listed.status_code == 200 and listed.json_body["prefix"] == ""


def test_with_no_edge_a_file_share_falls_back_to_the_origin(
    cp_api: Any, no_edges: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    data = os.urandom(5000)
    started, _ = upload(cp_api, data, path=unique_path("film.mp4"), extra={"content_type": None})
    share = urlsplit(
        cp_api.call("POST", f"/files/{started['file_id']}/share", {"ttl_seconds": 600}).json_body[
            "share_url"
        ]
    )
    for method in ("GET", "HEAD"):
        answer = cp_api.call(method, f"{share.path}?{share.query}", key=False)
        assert answer.status_code == 307, answer.body
    location = answer.headers["Location"]
    query = dict(parse_qsl(urlsplit(location).query))
    assert query["response-content-type"] == "video/mp4"
    got = requests.get(location, headers={"Range": "bytes=100-199"}, timeout=10)
    assert got.status_code == 206 and got.content == data[100:200]
    assert got.headers["Content-Type"] == "video/mp4"
    assert requests.get(location, timeout=10).content == data
    assert '"OriginFallback"' in capsys.readouterr().out


def test_with_no_edge_a_folder_share_answers_playlists_and_redirects_segments(
    cp_api: Any, no_edges: Any, hls: dict[str, Any]
) -> None:
    share = _folder_share(cp_api, hls["folder"])
    playlist = cp_api.call("GET", share + "hi/index.m3u8", key=False)
    assert playlist.status_code == 200, playlist.body
    assert playlist.body == PLAYLIST
    assert playlist.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert playlist.headers["Cache-Control"] == "private, max-age=2"
    head = cp_api.call("HEAD", share + "hi/index.m3u8", key=False)
    assert head.status_code == 200 and head.body == b""
    segment = cp_api.call("GET", share + "hi/seg000.m4s", key=False)
    assert segment.status_code == 307
    got = requests.get(segment.headers["Location"], timeout=10)
    assert got.content == hls["segment_data"]
    missing = cp_api.call("GET", share + "hi/seg999.m4s", key=False)
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"


def test_edges_past_their_load_bound_count_as_none(
    cp_api: Any, cp_stack: Any, no_edges: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import aws

    node = register(cp_api, cp_stack)
    assert send_heartbeat(cp_api, node["node_id"], node["credential"], load=50.0).status_code == 200
    started, done = upload(cp_api, os.urandom(10))
    share = urlsplit(
        cp_api.call("POST", f"/files/{started['file_id']}/share", {"ttl_seconds": 60}).json_body[
            "share_url"
        ]
    )
    url = f"{share.path}?{share.query}"
    assert (
        urlsplit(cp_api.call("GET", url, key=False).headers["Location"]).path
        == f"/f/{started['file_id']}"
    )
    monkeypatch.setenv("FSNODE_EDGE_MAX_LOAD", "50")
    aws.reset()
    location = urlsplit(cp_api.call("GET", url, key=False).headers["Location"])
    assert location.path.endswith(done.json_body["key"])  # the origin object


def test_an_unpinned_import_never_falls_back(cp_api: Any, cp_stack: Any, no_edges: Any) -> None:
    key, _ = put_import_object(cp_stack, b"x" * 10)
    record = cp_api.call(
        "POST", "/files/import", {"bucket": cp_stack.env["FSNODE_BUCKET"], "key": key}
    ).json_body
    assert record["version_id"] is None
    share = urlsplit(
        cp_api.call("POST", f"/files/{record['file_id']}/share", {"ttl_seconds": 60}).json_body[
            "share_url"
        ]
    )
    answer = cp_api.call("GET", f"{share.path}?{share.query}", key=False)
    # Its object may be replaced under its key: only an edge checks the ETag on each read.
    assert answer.status_code == 503 and error_of(answer)["code"] == "unavailable"
