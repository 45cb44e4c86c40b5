"""Folders, versions and the origin, end to end on a stack of its own (one edge, small
chunks, a grace period of seconds, prune every second):

- ``sync --prefix``, ``ls``, ``share --prefix``: a folder share lists its folder and
  sends each file to one edge, keeping the path form (relative playlist URLs work);
- a stream that began before an overwrite or a delete finishes byte for byte, and the
  old version is collected once the grace period is over;
- with every edge killed, file and folder shares are served by the origin:
  ``fsnode get SHARE_URL`` and ``fsnode get SHARE_URL/ -o DIR`` byte-exact.

Runs in file order: the last test kills the stack's edge.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from fsnode.localstack.resources import LOCAL_CREDENTIALS
from fsnode.localstack.stack import StackInfo
from tests.e2e.cli_helpers import cli
from tests.e2e.conftest import own_stack, run_cli
from tests.helpers import wait_for

GRACE = 8
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def folder_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    with own_stack(
        tmp_path_factory, "folder-stack", "--nodes", "1", "--chunk-size", str(CHUNK),
        "--heartbeat-interval", "1", "--heartbeat-timeout", "6", "--schedule-seconds", "1",
        "--env", f"FSNODE_RETIRE_GRACE_SECONDS={GRACE}",
    ) as info:  # fmt: skip
        yield info


def _s3(stack: StackInfo) -> Any:
    return boto3.client(
        "s3", endpoint_url=stack.aws_endpoint, region_name=stack.region, **LOCAL_CREDENTIALS
    )


def _exists(stack: StackInfo, key: str) -> bool:
    try:
        _s3(stack).head_object(Bucket=stack.bucket, Key=key)
    except ClientError:
        return False
    return True


def _hls_folder(root: Path) -> dict[str, bytes]:
    files = {
        "master.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nhi/index.m3u8\n",
        "hi/index.m3u8": (
            b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nseg000.m4s\n"
            b"#EXTINF:4.0,\nseg001.m4s\n#EXT-X-ENDLIST\n"
        ),
        "hi/seg000.m4s": os.urandom(3 * CHUNK + 17),
        "hi/seg001.m4s": os.urandom(CHUNK // 2),
    }
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    return files


@pytest.fixture(scope="module")
def hls(folder_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    local = tmp_path_factory.mktemp("hls")
    files = _hls_folder(local)
    prefix = f"shows-{os.urandom(4).hex()}/trailer/"
    synced = cli(folder_stack, "sync", str(local), "--prefix", prefix)
    assert sorted(e["name"] for e in synced["uploaded"]) == sorted(files)
    share = cli(folder_stack, "share", "--prefix", prefix, "--ttl", "3600")
    return {"files": files, "prefix": prefix, "share_url": share["share_url"]}


def test_a_synced_folder_is_listed_and_shared_by_path(
    folder_stack: StackInfo, hls: dict[str, Any]
) -> None:
    prefix, share_url = hls["prefix"], hls["share_url"]
    listed = cli(folder_stack, "ls", prefix)["files"]
    assert [f["path"][len(prefix) :] for f in listed] == sorted(hls["files"])
    types = {f["path"][len(prefix) :]: f["content_type"] for f in listed}
    assert types["master.m3u8"] == "application/vnd.apple.mpegurl"
    assert types["hi/seg000.m4s"] == "video/iso.segment"

    assert share_url.endswith("/") and "/t/" in share_url
    listing = requests.get(share_url, headers={"Accept": "application/json"}, timeout=30)
    assert listing.status_code == 200, listing.text
    assert sorted(f["path"] for f in listing.json()["files"]) == sorted(hls["files"])
    assert requests.head(share_url, timeout=30).status_code == 200
    token = urlsplit(share_url).path.split("/")[2]
    edge = urlsplit(folder_stack.edges[0].url).netloc
    for name in ("master.m3u8", "hi/index.m3u8", "hi/seg000.m4s"):
        for method in ("GET", "HEAD"):
            answer = requests.request(method, share_url + name, allow_redirects=False, timeout=30)
            assert answer.status_code == 307, answer.text
            location = urlsplit(answer.headers["Location"])
            # The same path form on the folder's edge: relative URLs resolve under it.
            assert (location.netloc, location.path) == (edge, f"/t/{token}/{prefix}{name}")
    for trick in (
        "../secret",
        "%2e%2e/secret",
        "hi//seg000.m4s",
        "hi%2Fseg000.m4s",
        "hi/seg%00.m4s",
        "./master.m3u8",
    ):
        status, body = _raw_get(share_url + trick)
        assert status == 400, (trick, body)
        assert json.loads(body)["error"]["code"] == "invalid_input"
    sibling = share_url.replace("/trailer/", "/trailer2/")
    assert requests.get(sibling + "x.ts", allow_redirects=False, timeout=30).status_code == 403


def test_the_folder_plays_from_its_edge_byte_for_byte(
    folder_stack: StackInfo, hls: dict[str, Any]
) -> None:
    """Each file through the share URL: the control plane redirects to the folder's edge,
    which resolves the path from S3 and serves it with its type and caching rules."""
    share_url = hls["share_url"]
    types = {".m3u8": "application/vnd.apple.mpegurl", ".m4s": "video/iso.segment"}
    for name, body in hls["files"].items():
        for method in ("GET", "HEAD"):
            answer = requests.request(
                method, share_url + name, verify=folder_stack.ca_cert, timeout=60
            )
            assert answer.status_code == 200, (name, answer.text)
            assert answer.url.startswith(folder_stack.edges[0].url + "/t/")
            assert answer.content == (body if method == "GET" else b"")
            assert answer.headers["Content-Length"] == str(len(body))
            assert answer.headers["Content-Type"] == types[name[name.rfind(".") :]]
            cache = answer.headers["Cache-Control"]
            assert (
                cache == "private, max-age=2"
                if name.endswith(".m3u8")
                else int(cache.rpartition("=")[2]) > 2
            )
    ranged = requests.get(
        share_url + "hi/seg000.m4s",
        headers={"Range": "bytes=5-9"},
        verify=folder_stack.ca_cert,
        timeout=60,
    )
    assert (ranged.status_code, ranged.content) == (206, hls["files"]["hi/seg000.m4s"][5:10])


def _raw_get(url: str) -> tuple[int, bytes]:
    """GET with the path sent as written (requests would remove dot segments first)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        connection.request("GET", parts.path)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def _stream_while(
    stack: StackInfo, tmp_path: Path, change: Callable[[Path, str], None]
) -> tuple[dict[str, Any], bytes, bytes]:
    """A stream through the edge that begins on one version, then ``change(local file,
    path)`` runs, then the stream goes on. Returns (upload, the first version's bytes,
    what the stream got)."""
    path = f"streams/{os.urandom(4).hex()}.bin"
    local = tmp_path / "film.bin"
    first = os.urandom(40 * CHUNK)
    local.write_bytes(first)
    up = cli(stack, "upload", str(local), "--path", path, "--share", "--ttl", "600")
    with requests.get(up["share_url"], stream=True, verify=stack.ca_cert, timeout=60) as answer:
        assert answer.status_code == 200, answer.text
        body = answer.raw.read(2 * CHUNK)
        change(local, path)
        body += answer.raw.read()
    return up, first, body


def test_a_stream_outlives_an_overwrite_and_the_old_version_is_collected(
    folder_stack: StackInfo, tmp_path: Path
) -> None:
    def overwrite(local: Path, path: str) -> None:
        local.write_bytes(os.urandom(10 * CHUNK))
        cli(folder_stack, "upload", str(local), "--path", path)

    up, first, got = _stream_while(folder_stack, tmp_path, overwrite)
    assert got == first  # never cut, never mixed
    old_key = f"files/{up['id']}/{up['version']}"
    wait_for(
        lambda: not _exists(folder_stack, old_key), "the old version to be collected", GRACE + 60
    )
    record = cli(folder_stack, "ls", up["path"])["files"][0]
    assert record["file_id"] == up["id"] and record["version"] != up["version"]
    assert _exists(folder_stack, record["key"])  # the new version is untouched


def test_a_stream_outlives_a_delete_and_the_file_is_collected(
    folder_stack: StackInfo, tmp_path: Path
) -> None:
    def delete(local: Path, path: str) -> None:
        file_id = cli(folder_stack, "ls", path)["files"][0]["file_id"]
        cli(folder_stack, "rm", file_id)

    up, first, got = _stream_while(folder_stack, tmp_path, delete)
    assert got == first
    assert requests.get(up["share_url"], allow_redirects=False, timeout=30).status_code == 410
    head_key = f"meta/v1/files/{up['id']}/head.json"
    head = json.loads(
        _s3(folder_stack).get_object(Bucket=folder_stack.bucket, Key=head_key)["Body"].read()
    )
    assert head["status"] == "deleted"
    wait_for(lambda: not _exists(folder_stack, head_key), "the file to be collected", GRACE + 60)
    assert not _exists(folder_stack, f"files/{up['id']}/{up['version']}")


def test_with_every_edge_killed_the_origin_serves_files_and_folders(
    folder_stack: StackInfo, hls: dict[str, Any], tmp_path: Path
) -> None:
    """#20.6: the share redirect falls back to the origin. (Last in this file.)"""
    local = tmp_path / "alone.bin"
    data = os.urandom(5 * CHUNK + 3)
    local.write_bytes(data)
    up = cli(
        folder_stack,
        "upload",
        str(local),
        "--path",
        f"alone/{os.urandom(4).hex()}",
        "--share",
        "--ttl",
        "600",
    )
    killed = run_cli("local", "kill", "edge-1", "--state-dir", folder_stack.state_dir)
    assert killed.returncode == 0, killed.stderr
    wait_for(lambda: cli(folder_stack, "cluster")["live_nodes"] == 0, "the edge to go quiet")

    out = tmp_path / "alone.out"
    got = cli(folder_stack, "get", up["share_url"], "-o", str(out))
    assert out.read_bytes() == data
    assert list(got["sources"]) == [urlsplit(folder_stack.aws_endpoint).netloc]

    target = tmp_path / "trailer"
    folder = cli(folder_stack, "get", hls["share_url"], "-o", str(target))
    assert len(folder["files"]) == len(hls["files"])
    for name, body in hls["files"].items():
        assert (target / name).read_bytes() == body, name
    # A playlist is answered by the control plane itself (its relative URLs then
    # resolve back to /t/...), a segment redirected to a presigned origin URL.
    playlist = requests.get(hls["share_url"] + "hi/index.m3u8", allow_redirects=False, timeout=30)
    assert (playlist.status_code, playlist.content) == (200, hls["files"]["hi/index.m3u8"])
    segment = requests.get(hls["share_url"] + "hi/seg001.m4s", allow_redirects=False, timeout=30)
    assert segment.status_code == 307
    assert (
        urlsplit(segment.headers["Location"]).netloc == urlsplit(folder_stack.aws_endpoint).netloc
    )
    log = (Path(folder_stack.state_dir) / "logs" / "api.log").read_text()
    assert '"OriginFallback"' in log
