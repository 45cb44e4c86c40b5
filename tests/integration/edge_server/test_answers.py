"""What the edge answers for a shared file: whole, ranged, HEAD, conditional, CORS;
each over HTTPS and plain HTTP, cold and cached."""

from __future__ import annotations

import re
import time

import pytest
import requests
from fsnode_core.ids import new_id

from tests.integration.edge_fixtures import EdgeServer
from tests.integration.edge_publishing import VERSION, share_query
from tests.integration.edge_server.served import (
    CHUNK,
    DATA,
    file_url,
    listed,
    publish,
)


def test_full_get(shared: tuple[str, dict[str, str]], http: requests.Session) -> None:
    url, query = shared
    asked = int(time.time())  # the edge reckons max-age after this, so it can only be less
    answer = http.get(url, params=query)
    assert answer.status_code == 200
    assert answer.content == DATA
    headers = answer.headers
    assert headers["Content-Length"] == str(len(DATA))
    assert headers["Content-Type"] == "video/mp4"
    assert headers["Accept-Ranges"] == "bytes"
    assert re.fullmatch(r'"[0-9a-f]{32}"', headers["ETag"])
    assert headers["Last-Modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    cache_control = re.fullmatch(r"private, max-age=(\d+)", headers["Cache-Control"])
    assert cache_control is not None, headers["Cache-Control"]
    max_age = int(cache_control.group(1))
    assert 0 < max_age <= int(query["exp"]) - asked + 1
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Content-Range" in headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        (f"bytes={CHUNK - 10}-{CHUNK + 9}", CHUNK - 10, CHUNK + 9),  # across a chunk boundary
        (f"bytes={CHUNK - 1}-{3 * CHUNK + 5}", CHUNK - 1, 3 * CHUNK + 5),  # across three
        ("bytes=-100", len(DATA) - 100, len(DATA) - 1),  # suffix
        (f"bytes={2 * CHUNK}-", 2 * CHUNK, len(DATA) - 1),  # open-ended
        (f"bytes=5-{10 * len(DATA)}", 5, len(DATA) - 1),  # clamped past the end
    ],
)
def test_single_range(
    shared: tuple[str, dict[str, str]], http: requests.Session, header: str, first: int, last: int
) -> None:
    url, query = shared
    answer = http.get(url, params=query, headers={"Range": header})
    assert answer.status_code == 206
    assert answer.content == DATA[first : last + 1]
    assert answer.headers["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert answer.headers["Content-Length"] == str(last - first + 1)


def test_multiple_ranges(shared: tuple[str, dict[str, str]], http: requests.Session) -> None:
    url, query = shared
    spans = [(0, 9), (CHUNK - 5, CHUNK + 4), (len(DATA) - 3, len(DATA) - 1)]
    header = "bytes=" + ",".join(f"{a}-{b}" for a, b in spans)
    answer = http.get(url, params=query, headers={"Range": header})
    assert answer.status_code == 206
    match = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", answer.headers["Content-Type"])
    assert match
    assert int(answer.headers["Content-Length"]) == len(answer.content)
    boundary = match.group(1).encode()
    parts = answer.content.split(b"--" + boundary)
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    for raw, (first, last) in zip(parts[1:-1], spans, strict=True):
        head, body = raw.split(b"\r\n\r\n", 1)
        assert f"Content-Range: bytes {first}-{last}/{len(DATA)}".encode() in head
        assert b"Content-Type: video/mp4" in head
        assert body == DATA[first : last + 1] + b"\r\n"


def test_unsatisfiable_range(shared: tuple[str, dict[str, str]], http: requests.Session) -> None:
    url, query = shared
    answer = http.get(url, params=query, headers={"Range": f"bytes={len(DATA)}-"})
    assert answer.status_code == 416
    assert answer.headers["Content-Range"] == f"bytes */{len(DATA)}"
    assert answer.json()["error"]["code"] == "range_not_satisfiable"


@pytest.mark.parametrize("header", ["bytes=10-5", "pages=1-2", "bytes=abc", "bytes=--1"])
def test_malformed_range_is_ignored(
    shared: tuple[str, dict[str, str]], http: requests.Session, header: str
) -> None:
    url, query = shared
    answer = http.get(url, params=query, headers={"Range": header})
    assert answer.status_code == 200
    assert answer.content == DATA


def test_head(shared: tuple[str, dict[str, str]], http: requests.Session) -> None:
    url, query = shared
    for headers in ({}, {"Range": "bytes=0-9"}):  # RFC 9110 14.2: Range is for GET only
        answer = http.head(url, params=query, headers=headers)
        assert answer.status_code == 200
        assert answer.headers["Content-Length"] == str(len(DATA))
        assert answer.headers["Accept-Ranges"] == "bytes"
        assert answer.content == b""


def test_conditional_requests(shared: tuple[str, dict[str, str]], http: requests.Session) -> None:
    url, query = shared
    first = http.get(url, params=query, headers={"Range": "bytes=0-0"})
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]

    not_modified = http.get(url, params=query, headers={"If-None-Match": f'W/{etag}, "x"'})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["ETag"] == etag
    assert http.get(url, params=query, headers={"If-None-Match": '"other"'}).status_code == 200
    since = http.get(url, params=query, headers={"If-Modified-Since": last_modified})
    assert since.status_code == 304

    ranged = {"Range": "bytes=10-19"}
    same = http.get(url, params=query, headers={**ranged, "If-Range": etag})
    assert (same.status_code, same.content) == (206, DATA[10:20])
    by_date = http.get(url, params=query, headers={**ranged, "If-Range": last_modified})
    assert by_date.status_code == 206
    changed = http.get(url, params=query, headers={**ranged, "If-Range": '"stale"'})
    assert (changed.status_code, changed.content) == (200, DATA)


def test_cors_preflight(edge: EdgeServer, http: requests.Session) -> None:
    answer = http.options(
        f"{edge.url}/f/{new_id()}",
        headers={
            "Origin": "https://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in answer.headers["Access-Control-Allow-Methods"]
    assert "Range" in answer.headers["Access-Control-Allow-Headers"]


def test_empty_file(edge: EdgeServer, http: requests.Session) -> None:
    manifest = publish(edge, b"")
    query = share_query(manifest.file_id, VERSION)
    for headers in ({}, {"Range": "bytes=0-"}, {"Range": "bytes=-5"}):
        answer = http.get(file_url(edge, manifest), params=query, headers=headers)
        assert (answer.status_code, answer.content) == (200, b"")
        assert answer.headers["Content-Length"] == "0"


# -- the rest of issue 3's header rules, each over real HTTPS --------------------------


def test_head_carries_the_get_headers_without_a_body(
    shared: tuple[str, dict[str, str]], http: requests.Session
) -> None:
    url, query = shared
    before = int(time.time())
    got = http.get(url, params=query)
    head = http.head(url, params=query)
    after = int(time.time()) + 1
    assert head.status_code == 200 and head.content == b""
    for name in ("ETag", "Last-Modified", "Content-Type", "Content-Length"):
        assert head.headers[name] == got.headers[name], name
    # max-age counts down to the share's expiry, so the two may straddle a second.
    expires = int(query["exp"])
    for answer in (got, head):
        control = answer.headers["Cache-Control"]
        assert control.startswith("private, max-age="), control
        assert expires - after <= int(control.rpartition("=")[2]) <= expires - before


def test_cors_headers_are_on_every_answer(edge: EdgeServer, http: requests.Session) -> None:
    manifest = publish(edge)
    url = file_url(edge, manifest)
    query = share_query(manifest.file_id, VERSION)
    answers = [
        http.get(url, params=query, headers={"Range": "bytes=0-9", "Origin": "https://p.example"}),
        http.get(url, params={}, headers={"Origin": "https://p.example"}),  # 403
    ]
    assert [a.status_code for a in answers] == [206, 403]
    for answer in answers:
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        exposed = listed(answer.headers["Access-Control-Expose-Headers"])
        assert {"content-range", "content-length", "accept-ranges", "etag"} <= exposed
    # An error for one signed URL must not be replayed by a cache.
    assert answers[1].headers["Cache-Control"] == "no-store"
    preflight = http.options(
        url,
        headers={
            "Origin": "https://p.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range, if-range",
        },
    )
    allowed = listed(preflight.headers["Access-Control-Allow-Headers"])
    assert {"range", "if-range", "if-none-match", "if-modified-since"} <= allowed
    assert {"get", "head"} <= listed(preflight.headers["Access-Control-Allow-Methods"])
