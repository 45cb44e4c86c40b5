"""Folder shares at the edge (``GET|HEAD /t/{TOKEN}/{path...}``) over real HTTPS against a
real moto S3 server: paths resolve from the tree keys the control plane publishes, one
listing per folder, and every path trick is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from http.client import HTTPSConnection
from pathlib import Path

import boto3
import pytest
import requests
from fsnode_core.digests import entity_tag
from fsnode_core.published_keys import data_key, parse_tree_key

from edge_node.prefetch import PrefetchConfig
from tests.helpers import https_session, wait_for
from tests.integration.edge_fixtures import EdgeServer, ThrowawayCA, edge_on_moto
from tests.integration.edge_publishing import delete_file, folder_token, folder_url, put_file

BUCKET = "fsnode-edge-folders"
CHUNK = 64 * 1024
FOLDER = "media/show/"
FILES = {
    "master.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv0/index.m3u8\n",
    "v0/index.m3u8": b"#EXTM3U\n#EXTINF:4,\nseg0.ts\n#EXTINF:4,\nseg1.ts\n#EXT-X-ENDLIST\n",
    "v0/seg0.ts": os.urandom(CHUNK + 100),
    "v0/seg1.ts": os.urandom(5000),
    "manifest.mpd": b"<MPD/>",
    "v0/init.m4s": os.urandom(300),
    "subs/en.vtt": b"WEBVTT\n",
    "subs/fr ç+1.vtt": b"WEBVTT fr\n",  # a space, a plus and non-ASCII in a key
}
TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".mpd": "application/dash+xml",
    ".m4s": "video/iso.segment",
    ".vtt": "text/vtt",
}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    with edge_on_moto(tmp_path_factory, BUCKET) as server:
        for relative, data in FILES.items():
            # Published with a generic type: the edge still answers by extension.
            put_file(
                BUCKET, data, CHUNK, path=FOLDER + relative, content_type="application/octet-stream"
            )
        # A sibling folder that shares the prefix's text but not its segments.
        put_file(BUCKET, b"secret", CHUNK, path="media/show2/x.ts")
        yield server


@pytest.fixture(scope="module")
def http(edge: EdgeServer) -> Iterator[requests.Session]:
    with https_session(edge.ca_file) as session:
        yield session


def raw_get(edge: EdgeServer, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """A request with the path exactly as given (requests would normalise dot segments)."""
    connection = HTTPSConnection("127.0.0.1", edge.port, context=edge.client_ssl())
    try:
        connection.request(method, path)
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        connection.close()


def test_every_file_of_the_folder_from_one_listing(
    edge: EdgeServer, http: requests.Session
) -> None:
    token = folder_token(FOLDER)
    pages = edge.published.list_pages
    for relative, data in FILES.items():
        answer = http.get(folder_url(edge.url, token, FOLDER + relative))
        assert answer.status_code == 200, (relative, answer.text)
        assert answer.content == data
        extension = relative[relative.rfind(".") :]
        assert answer.headers["Content-Type"] == TYPES[extension]
        playlist = extension in (".m3u8", ".mpd")
        cache = answer.headers["Cache-Control"]
        assert cache == "private, max-age=2" if playlist else cache.startswith("private, max-age=")
        assert int(cache.rpartition("=")[2]) > (2 if not playlist else 1)
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
    # One ListObjectsV2 taught the edge the whole folder.
    assert edge.published.list_pages == pages + 1


def test_head_range_and_etag(edge: EdgeServer, http: requests.Session) -> None:
    token = folder_token(FOLDER)
    url = folder_url(edge.url, token, FOLDER + "v0/seg0.ts")
    head = http.head(url)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(FILES["v0/seg0.ts"]))
    assert head.content == b""
    ranged = http.get(url, headers={"Range": "bytes=10-19"})
    assert (ranged.status_code, ranged.content) == (206, FILES["v0/seg0.ts"][10:20])
    assert ranged.headers["ETag"] == head.headers["ETag"]
    assert http.get(url, headers={"If-None-Match": head.headers["ETag"]}).status_code == 304


def test_a_file_published_after_the_listing_is_found(
    edge: EdgeServer, http: requests.Session
) -> None:
    token = folder_token(FOLDER)
    assert http.get(folder_url(edge.url, token, FOLDER + "master.m3u8")).status_code == 200
    late = put_file(BUCKET, b"late segment", CHUNK, path=FOLDER + "v0/seg9.ts")
    answer = http.get(folder_url(edge.url, token, FOLDER + "v0/seg9.ts"))
    assert (answer.status_code, answer.content) == (200, b"late segment")
    assert answer.headers["ETag"] == entity_tag(late.file_id, late.version, late.etag, late.size)


def test_a_deleted_file_is_not_served(edge: EdgeServer, http: requests.Session) -> None:
    token = folder_token("media/gone/")
    doomed = put_file(BUCKET, b"bye", CHUNK, path="media/gone/a.ts")
    url = folder_url(edge.url, token, "media/gone/a.ts")
    assert http.get(url).status_code == 200
    delete_file(BUCKET, doomed)
    edge.call(_forget(edge))  # as after the bound: the head is read again
    answer = http.get(url)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


async def _forget(edge: EdgeServer) -> None:
    assert edge.context is not None
    edge.context.manifests.distrust_all()


def test_missing_file_and_the_folder_itself(edge: EdgeServer, http: requests.Session) -> None:
    token = folder_token(FOLDER)
    missing = http.get(folder_url(edge.url, token, FOLDER + "v0/nope.ts"))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    for path in (f"/t/{token}/media/show/", f"/t/{token}/media/show", f"/t/{token}"):
        status, _headers, body = raw_get(edge, path)
        # The folder itself (its listing is the control plane's), its name without the
        # slash (not in the folder), no path at all (not a path).
        assert status in (400, 403, 404), path
        assert json.loads(body)["error"]["code"] in ("not_found", "forbidden", "invalid_input")
    status, _headers, _body = raw_get(edge, f"/t/{token}/media/show/")
    assert status == 404


@pytest.mark.parametrize(
    ("tail", "status"),
    [
        ("media/show/../show2/x.ts", 400),  # a plain dot-dot segment
        ("media/show/%2e%2e/show2/x.ts", 400),  # percent-encoded
        ("media/show/%2E%2E/show2/x.ts", 400),
        ("media/show/./master.m3u8", 400),
        ("media/show//master.m3u8", 400),  # an empty segment
        ("media/show/v0%2Fseg0.ts", 400),  # an encoded slash
        ("media/show/v0%5Cseg0.ts", 400),  # an encoded backslash
        ("media/show/seg%00.ts", 400),  # NUL
        ("media/show/seg%zz.ts", 400),  # a malformed escape
        ("media/show/%ff.ts", 400),  # not UTF-8
        ("media/show2/x.ts", 403),  # outside the folder, by whole segments
        ("media/x.ts", 403),
    ],
)
def test_path_tricks_are_refused(edge: EdgeServer, tail: str, status: int) -> None:
    token = folder_token(FOLDER)
    got, _headers, body = raw_get(edge, f"/t/{token}/{tail}")
    assert got == status, body
    assert json.loads(body)["error"]["code"] == ("invalid_input" if status == 400 else "forbidden")


def test_bad_tokens_are_forbidden(edge: EdgeServer) -> None:
    good = folder_token(FOLDER)
    payload, _, sig = good.partition(".")
    forged = f"{payload}.{'A' * len(sig)}"
    for token in (
        forged,
        folder_token(FOLDER, ttl=-10),
        "garbage",
        f"{good}x",
        folder_token(FOLDER, not_before=2**40),
        folder_token(FOLDER, ip="10.9.9.0/24"),
    ):
        status, _headers, body = raw_get(edge, f"/t/{token}/media/show/master.m3u8")
        assert status == 403, token
        assert json.loads(body)["error"]["code"] == "forbidden"


def test_a_token_admits_its_own_network(edge: EdgeServer) -> None:
    token = folder_token(FOLDER, ip="127.0.0.0/8")
    status, _headers, body = raw_get(edge, f"/t/{token}/media/show/master.m3u8")
    assert (status, body) == (200, FILES["master.m3u8"])


def test_cors_preflight_on_folder_urls(edge: EdgeServer, http: requests.Session) -> None:
    answer = http.options(
        folder_url(edge.url, folder_token(FOLDER), FOLDER + "master.m3u8"),
        headers={"Origin": "https://player.example", "Access-Control-Request-Method": "GET"},
    )
    assert answer.status_code == 204
    assert "If-Match" in answer.headers["Access-Control-Allow-Headers"]


SEGMENTS = 10
LONG = (
    '#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n'
    + "".join(f"#EXTINF:4,\nseg{i:03d}.m4s\n" for i in range(SEGMENTS))
    + "#EXT-X-ENDLIST\n"
)


@pytest.fixture(scope="module")
def long_stream(edge: EdgeServer) -> dict[str, bytes]:
    """A media playlist of ten segments (and an init segment), one chunk each; a master
    playlist naming it first, then a second rendition's."""
    files = {"live/index.m3u8": LONG.encode(), "live/init.mp4": os.urandom(700)}
    files.update({f"live/seg{i:03d}.m4s": os.urandom(CHUNK - i) for i in range(SEGMENTS)})
    files["master.m3u8"] = (
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2000000\nlive/index.m3u8\n"
        b"#EXT-X-STREAM-INF:BANDWIDTH=800000\nalt/index.m3u8\n"
    )
    files["alt/index.m3u8"] = LONG.encode()
    files.update({f"alt/seg{i:03d}.m4s": os.urandom(100) for i in range(2)})
    for relative, data in files.items():
        put_file(BUCKET, data, CHUNK, path="media/long/" + relative)
    return files


def prefetched_paths(server: EdgeServer) -> set[str]:
    """Paths of the files whose data the edge read from the origin."""
    keys = {key for key, _offset, _length in server.origin.ranges}
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="meta/v1/tree/media/long/")
    entries = [parse_tree_key(item["Key"]) for item in listed.get("Contents", [])]
    return {
        entry.path.removeprefix("media/long/")
        for entry in entries
        if entry is not None and data_key(entry.file_id, entry.version) in keys
    }


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # The first three references: the init segment and two media segments.
        (PrefetchConfig(segments=3), {"live/init.mp4", "live/seg000.m4s", "live/seg001.m4s"}),
        # A byte cap stops it sooner: the init segment and one whole segment fit.
        (PrefetchConfig(segments=10, max_bytes=700 + CHUNK), {"live/init.mp4", "live/seg000.m4s"}),
        (PrefetchConfig(segments=0), set()),  # off
    ],
)
def test_a_media_playlist_prefetches_its_first_segments_and_no_more(
    edge: EdgeServer,
    long_stream: dict[str, bytes],
    tmp_path: Path,
    config: PrefetchConfig,
    expected: set[str],
) -> None:
    server = EdgeServer(tmp_path, ThrowawayCA(), BUCKET, prefetch=config)
    server.start()
    try:
        token = folder_token("media/long/")
        with https_session(server.ca_file) as http:
            playlist = http.get(folder_url(server.url, token, "media/long/live/index.m3u8"))
            assert playlist.content == long_stream["live/index.m3u8"]
            assert server.context is not None and server.context.prefetch is not None
            prefetch = server.context.prefetch
            wait_for(lambda: prefetch.running == 0, "the prefetch to end")
            assert prefetched_paths(server) == {"live/index.m3u8", *expected}
            # Asked again (a live player polls it), nothing more is fetched.
            http.get(folder_url(server.url, token, "media/long/live/index.m3u8"))
            wait_for(lambda: prefetch.running == 0, "the prefetch to end")
            assert prefetched_paths(server) == {"live/index.m3u8", *expected}
            # The player's first segment is then a hit: no origin read.
            reads = len(server.origin.ranges)
            first = http.get(folder_url(server.url, token, "media/long/live/seg000.m4s"))
            assert first.content == long_stream["live/seg000.m4s"]
            if "live/seg000.m4s" in expected:
                assert len(server.origin.ranges) == reads
    finally:
        server.stop()


def test_a_master_playlist_prefetches_the_variant_players_start_with(
    edge: EdgeServer, long_stream: dict[str, bytes], tmp_path: Path
) -> None:
    server = EdgeServer(tmp_path, ThrowawayCA(), BUCKET, prefetch=PrefetchConfig(segments=3))
    server.start()
    try:
        token = folder_token("media/long/")
        with requests.Session() as http:
            http.trust_env = False
            http.verify = str(server.ca_file)
            master = http.get(folder_url(server.url, token, "media/long/master.m3u8"))
            assert master.content == long_stream["master.m3u8"]
            assert server.context is not None and server.context.prefetch is not None
            prefetch = server.context.prefetch
            wait_for(lambda: prefetch.running == 0, "the prefetch to end")
            # The first variant playlist (where players start) and its first segments;
            # nothing of the second rendition.
            assert prefetched_paths(server) == {
                "master.m3u8",
                "live/index.m3u8",
                "live/init.mp4",
                "live/seg000.m4s",
                "live/seg001.m4s",
            }
            # The player's variant playlist and first segment are then hits.
            reads = len(server.origin.ranges)
            for relative in ("live/index.m3u8", "live/init.mp4", "live/seg000.m4s"):
                answer = http.get(folder_url(server.url, token, "media/long/" + relative))
                assert answer.content == long_stream[relative]
            assert len(server.origin.ranges) == reads
    finally:
        server.stop()
