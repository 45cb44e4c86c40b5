"""The edge app over real HTTPS against a real moto S3 server.

Files are published to S3 as the control plane publishes them (``put_file``); the
control plane itself is covered by end-to-end tests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import time
from collections.abc import Iterator
from http.client import HTTPSConnection
from pathlib import Path

import aiohttp
import boto3
import pytest
import requests
from fsnode_core.ids import new_id
from fsnode_core.signing import SharePolicy
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_node.cache import CacheConfig, version_tag
from edge_node.manifests import Manifest
from edge_node.ranges import MAX_PARTS
from tests.integration.edge_fixtures import (
    VERSION,
    EdgeServer,
    ThrowawayCA,
    put_file,
    share_query,
    signer,
)

BUCKET = "fsnode-edge-test"
CHUNK = 64 * 1024
DATA = os.urandom(3 * CHUNK + 12_345)  # three whole chunks and a short one


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    from tests.integration.edge_fixtures import moto_s3

    with moto_s3():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        server = EdgeServer(tmp_path_factory.mktemp("edge"), ThrowawayCA(), BUCKET)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def http(edge: EdgeServer) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override ``verify``
        session.verify = str(edge.ca_file)  # real certificate checks, IP SAN included
        yield session


def publish(edge: EdgeServer, data: bytes = DATA) -> Manifest:
    return put_file(BUCKET, data, CHUNK)


def file_url(edge: EdgeServer, manifest: Manifest) -> str:
    return f"{edge.url}/f/{manifest.file_id}"


@pytest.fixture(params=["https-miss", "https-hit", "http-miss", "http-hit"])
def shared(
    request: pytest.FixtureRequest, edge: EdgeServer, http: requests.Session
) -> tuple[str, dict[str, str]]:
    """A fresh file, cold (miss) or already read once (hit), over HTTPS or plain HTTP
    (the plain listener sends cached bytes with sendfile)."""
    scheme, state = request.param.split("-")
    manifest = publish(edge)
    query = share_query(manifest.file_id, manifest.version)
    base = edge.url if scheme == "https" else edge.plain_url
    url = f"{base}/f/{manifest.file_id}"
    if state == "hit":
        assert http.get(url, params=query).content == DATA
    return url, query


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
    max_age = int(re.fullmatch(r"private, max-age=(\d+)", headers["Cache-Control"]).group(1))
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


def test_signature_checks(edge: EdgeServer, http: requests.Session) -> None:
    manifest = publish(edge)
    url = file_url(edge, manifest)
    good = share_query(manifest.file_id, VERSION)
    forged = {**good, "sig": good["sig"][:-4] + ("AAAA" if good["sig"][-4:] != "AAAA" else "BBBB")}
    expired = signer().sign(SharePolicy(manifest.file_id, int(time.time()) - 10))
    other_file = share_query(new_id(), VERSION)
    cases = [
        forged,
        expired,
        {**good, "kid": "nope"},
        {**good, "exp": str(int(good["exp"]) + 60)},  # policy no longer matches the signature
        {k: v for k, v in good.items() if k != "sig"},
        {},
        {**other_file},  # a valid signature, for another file
    ]
    for query in cases:
        answer = http.get(url, params=query)
        assert answer.status_code == 403, query
        assert answer.json()["error"]["code"] == "forbidden"
    assert http.get(url, params=good).status_code == 200


def test_superseded_version_is_gone(edge: EdgeServer, http: requests.Session) -> None:
    manifest = publish(edge)
    answer = http.get(file_url(edge, manifest), params=share_query(manifest.file_id, "0" * 32))
    assert answer.status_code == 410
    assert answer.json()["error"]["code"] == "gone"


def test_unknown_file_is_not_found(edge: EdgeServer, http: requests.Session) -> None:
    file_id = new_id()
    answer = http.get(f"{edge.url}/f/{file_id}", params=share_query(file_id, VERSION))
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "raw_id",
    [
        "..",
        "%2e%2e",
        "abc",
        "0123456789ABCDEF0123456789ABCDEF",  # upper case
        "0123456789abcdef0123456789abcdef0",  # 33 characters
        "..%5C..%5Cetc",
        "0123456789abcdef0123456789abcde%00",
    ],
)
def test_path_tricks_in_ids_are_rejected(edge: EdgeServer, raw_id: str) -> None:
    # http.client sends the path as is: requests would normalise dot segments away.
    connection = HTTPSConnection("127.0.0.1", edge.port, context=edge.client_ssl())
    try:
        connection.request("GET", f"/f/{raw_id}?v=1")
        answer = connection.getresponse()
        body = json.loads(answer.read())
    finally:
        connection.close()
    assert answer.status == 400
    assert body["error"]["code"] == "invalid_input"


def test_missing_origin_object_is_a_502(edge: EdgeServer, http: requests.Session) -> None:
    manifest = publish(edge)
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=manifest.key)
    answer = http.get(file_url(edge, manifest), params=share_query(manifest.file_id, VERSION))
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "origin_error"


def test_healthz_and_metrics(edge: EdgeServer, http: requests.Session) -> None:
    health = http.get(f"{edge.url}/healthz")
    assert health.status_code == 200
    assert health.json()["ok"] is True
    text = http.get(f"{edge.url}/metrics").text
    for name in (
        "fsnode_edge_cache_hits_total",
        "fsnode_edge_cache_misses_total",
        "fsnode_edge_bytes_served_total",
        "fsnode_edge_cache_evictions_total",
        "fsnode_edge_requests_in_flight",
        "fsnode_edge_cache_bytes",
        "fsnode_edge_head_reads_total",
        "fsnode_edge_manifest_reads_total",
        "fsnode_edge_tree_list_pages_total",
        "fsnode_edge_prefetch_segments_total",
    ):
        assert re.search(rf"^{name} \d+", text, re.M), name


def test_concurrent_cold_requests_cause_one_origin_read(edge: EdgeServer) -> None:
    manifest = publish(edge)
    query = share_query(manifest.file_id, VERSION)
    url = file_url(edge, manifest)
    span = (CHUNK + 100, CHUNK + 5000)  # inside chunk 1 only

    async def fetch_all() -> list[tuple[int, bytes]]:
        connector = aiohttp.TCPConnector(ssl=edge.client_ssl(), limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> tuple[int, bytes]:
                headers = {"Range": f"bytes={span[0]}-{span[1]}"}
                async with session.get(url, params=query, headers=headers) as answer:
                    return answer.status, await answer.read()

            return await asyncio.gather(*(one() for _ in range(50)))

    results = asyncio.run(fetch_all())
    assert all(status == 206 for status, _ in results)
    assert all(body == DATA[span[0] : span[1] + 1] for _, body in results)
    assert edge.origin.reads[(manifest.key, CHUNK)] == 1


def test_origin_failure_mid_body_cuts_the_connection(
    edge: EdgeServer, http: requests.Session
) -> None:
    manifest = publish(edge)
    query = share_query(manifest.file_id, VERSION)
    url = file_url(edge, manifest)
    assert http.get(url, params=query, headers={"Range": "bytes=0-0"}).status_code == 206
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=manifest.key)
    # Chunk 0 is cached, so the 200 starts; a later chunk cannot be read, and the
    # client must see a short body rather than a complete-looking wrong one.
    with pytest.raises(requests.exceptions.RequestException):
        answer = http.get(url, params=query)
        assert len(answer.content) < len(DATA)
        answer.raise_for_status()
        pytest.fail("a truncated body was delivered as complete")


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


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


def byte_ranges(spans: list[tuple[int, int]]) -> dict[str, str]:
    return {"Range": "bytes=" + ",".join(f"{first}-{last}" for first, last in spans)}


def multipart(answer: requests.Response) -> list[tuple[str, bytes]]:
    """(Content-Range, body) of each part of a multipart/byteranges answer."""
    match = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", answer.headers["Content-Type"])
    assert match, answer.headers["Content-Type"]
    assert int(answer.headers["Content-Length"]) == len(answer.content)
    raw_parts = answer.content.split(b"--" + match.group(1).encode())
    assert raw_parts[0] == b"" and raw_parts[-1] == b"--\r\n"
    parts = []
    for raw in raw_parts[1:-1]:
        head, body = raw.split(b"\r\n\r\n", 1)
        content_range = re.search(rb"Content-Range: (bytes \S+)", head)
        assert content_range and body.endswith(b"\r\n")
        parts.append((content_range.group(1).decode(), body[:-2]))
    return parts


def test_multipart_count_cap(shared: tuple[str, dict[str, str]], http: requests.Session) -> None:
    url, query = shared
    spans = [(i * 1000, i * 1000 + 9) for i in range(MAX_PARTS)]
    at_cap = http.get(url, params=query, headers=byte_ranges(spans))
    assert at_cap.status_code == 206
    assert multipart(at_cap) == [(f"bytes {a}-{b}/{len(DATA)}", DATA[a : b + 1]) for a, b in spans]
    # One part more: RFC 9110 section 14.2 lets a server ignore the header (as nginx's
    # max_ranges does): the whole file, once.
    spans.append((MAX_PARTS * 1000, MAX_PARTS * 1000 + 9))
    over = http.get(url, params=query, headers=byte_ranges(spans))
    assert (over.status_code, over.content) == (200, DATA)


def test_overlapping_ranges_are_coalesced_not_amplified(
    shared: tuple[str, dict[str, str]], http: requests.Session
) -> None:
    url, query = shared
    # Sixteen copies of the whole file would be 16x the bytes: one range is sent.
    whole = http.get(url, params=query, headers={"Range": "bytes=" + ",".join(["0-"] * MAX_PARTS)})
    assert (whole.status_code, whole.content) == (206, DATA)
    assert whole.headers["Content-Range"] == f"bytes 0-{len(DATA) - 1}/{len(DATA)}"
    # Overlapping ranges merge into one part; a disjoint one stays its own part.
    answer = http.get(url, params=query, headers={"Range": "bytes=0-99,50-149,100-120,-10"})
    assert answer.status_code == 206
    size = len(DATA)
    assert multipart(answer) == [
        (f"bytes 0-149/{size}", DATA[:150]),
        (f"bytes {size - 10}-{size - 1}/{size}", DATA[-10:]),
    ]
    # Unsatisfiable parts are dropped; all unsatisfiable is a 416.
    some = http.get(url, params=query, headers={"Range": f"bytes={size + 5}-,0-0"})
    assert (some.status_code, some.content) == (206, DATA[:1])
    none = http.get(url, params=query, headers={"Range": f"bytes={size}-,{size + 9}-"})
    assert none.status_code == 416
    assert none.headers["Content-Range"] == f"bytes */{size}"


def test_validators_and_preconditions(
    shared: tuple[str, dict[str, str]], http: requests.Session
) -> None:
    url, query = shared
    first = http.get(url, params=query, headers={"Range": "bytes=0-0"})
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    earlier = "Mon, 13 Nov 2023 22:13:20 GMT"  # a day before Last-Modified
    ranged = {"Range": "bytes=10-19"}

    def status(**headers: str) -> tuple[int, bytes]:
        answer = http.get(url, params=query, headers=headers)
        return answer.status_code, answer.content

    # If-None-Match (weak comparison, "*" matches) wins over If-Modified-Since.
    assert status(**{"If-None-Match": "*"})[0] == 304
    assert status(**{"If-None-Match": '"other"', "If-Modified-Since": last_modified}) == (200, DATA)
    assert status(**{"If-Modified-Since": earlier}) == (200, DATA)
    assert status(**{"If-Modified-Since": "not a date"}) == (200, DATA)
    # A 304 takes precedence over Range, and repeats the validators and caching rules.
    not_modified = http.get(url, params=query, headers={**ranged, "If-None-Match": etag})
    assert (not_modified.status_code, not_modified.content) == (304, b"")
    assert not_modified.headers["ETag"] == etag
    assert not_modified.headers["Last-Modified"] == last_modified
    assert not_modified.headers["Cache-Control"].startswith("private, max-age=")
    assert not_modified.headers.get("Content-Length") in (None, str(len(DATA)))
    # If-Range needs a strong match or the exact date; otherwise the whole file.
    assert status(**ranged, **{"If-Range": f"W/{etag}"}) == (200, DATA)
    assert status(**ranged, **{"If-Range": earlier}) == (200, DATA)
    assert status(**ranged, **{"If-Range": last_modified}) == (206, DATA[10:20])
    # Without Range, If-Range is ignored.
    assert status(**{"If-Range": '"stale"'}) == (200, DATA)


def test_if_match_refuses_another_version(
    shared: tuple[str, dict[str, str]], http: requests.Session
) -> None:
    """RFC 9110 section 13.1.1, as S3 answers: a client that began on one version and
    sends its ETag never gets another version's bytes."""
    url, query = shared
    first = http.get(url, params=query, headers={"Range": "bytes=0-0"})
    etag = first.headers["ETag"]
    earlier = "Mon, 13 Nov 2023 22:13:20 GMT"  # a day before Last-Modified

    def answer(**headers: str) -> requests.Response:
        return http.get(url, params=query, headers={"Range": "bytes=3-7", **headers})

    for held in (
        {"If-Match": etag},
        {"If-Match": f'"x", {etag}'},
        {"If-Match": "*"},
        {"If-Unmodified-Since": first.headers["Last-Modified"]},
    ):
        ok = answer(**held)
        assert (ok.status_code, ok.content) == (206, DATA[3:8]), held
    for failed in (
        {"If-Match": '"another-version"'},
        {"If-Match": f"W/{etag}"},
        {"If-Unmodified-Since": earlier},
        # If-Match decides; If-Unmodified-Since is then ignored (13.2.2).
        {"If-Match": '"x"', "If-Unmodified-Since": first.headers["Last-Modified"]},
    ):
        refused = answer(**failed)
        assert refused.status_code == 412, failed
        assert refused.json()["error"]["code"] == "precondition_failed"
        assert refused.headers["Cache-Control"] == "no-store"
    # If-Match holds, If-None-Match then decides.
    assert answer(**{"If-Match": etag, "If-None-Match": etag}).status_code == 304
    head = http.head(url, params=query, headers={"If-Match": '"nope"'})
    assert head.status_code == 412


@pytest.fixture(scope="module")
def cached(edge: EdgeServer, http: requests.Session) -> Manifest:
    """A file read once (so on the edge's disk), for the property-based examples."""
    manifest = publish(edge)
    answer = http.get(file_url(edge, manifest), params=share_query(manifest.file_id, VERSION))
    assert answer.content == DATA
    return manifest


def requested_spans(specs: list[str], size: int) -> list[tuple[int, int]]:
    """Each range-spec's bytes as inclusive ``(first, last)``, by RFC 9110 section
    14.1.1 read directly (the test's own reading, not the edge's parser)."""
    spans = []
    for spec in specs:
        first, _, last = spec.partition("-")
        if not first:  # a suffix: the last N bytes
            if int(last) > 0 and size > 0:
                spans.append((max(0, size - int(last)), size - 1))
        elif int(first) < size:  # satisfiable iff it starts inside the file
            spans.append((int(first), min(int(last), size - 1) if last else size - 1))
    return spans


def union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The bytes ``spans`` cover, as sorted disjoint runs."""
    runs: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        if runs and first <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], max(runs[-1][1], last))
        else:
            runs.append((first, last))
    return runs


def answered_parts(answer: requests.Response) -> list[tuple[int, int, bytes]]:
    """``(first, last, body)`` of each part of a 206, single or multipart, each part's
    Content-Range checked against the file's size."""
    if answer.headers["Content-Type"].startswith("multipart/byteranges"):
        labelled = multipart(answer)
    else:
        labelled = [(answer.headers["Content-Range"], answer.content)]
    parts = []
    for label, body in labelled:
        match = re.fullmatch(rf"bytes (\d+)-(\d+)/{len(DATA)}", label)
        assert match, label
        parts.append((int(match.group(1)), int(match.group(2)), body))
    return parts


@settings(
    max_examples=40,
    deadline=None,
)
@given(
    specs=st.lists(
        st.one_of(
            st.tuples(st.integers(0, len(DATA) + 10), st.integers(0, len(DATA) + 10)).map(
                lambda t: f"{min(t)}-{max(t)}"
            ),
            st.integers(0, len(DATA) + 10).map(lambda a: f"{a}-"),
            st.integers(1, len(DATA) + 10).map(lambda n: f"-{n}"),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_range_set_matches_python_slicing(
    edge: EdgeServer, http: requests.Session, cached: Manifest, specs: list[str]
) -> None:
    header = "bytes=" + ",".join(specs)
    answer = http.get(
        file_url(edge, cached),
        params=share_query(cached.file_id, VERSION),
        headers={"Range": header},
    )
    size = len(DATA)
    wanted = requested_spans(specs, size)
    if not wanted:
        assert answer.status_code == 416
        assert answer.headers["Content-Range"] == f"bytes */{size}"
        return
    assert answer.status_code == 206
    parts = answered_parts(answer)
    for first, last, body in parts:
        assert body == DATA[first : last + 1]
    spans = [(first, last) for first, last, _ in parts]
    if not any(b[0] <= a[1] for a, b in itertools.pairwise(sorted(wanted))):
        # No two requested ranges overlap: each is answered as asked, in request order.
        assert spans == wanted
    else:
        # Overlapping ranges may be merged (section 14.3): disjoint parts in order that
        # cover exactly the requested bytes.
        assert spans == sorted(spans)
        assert all(b[0] > a[1] for a, b in itertools.pairwise(spans))
        assert union(spans) == union(wanted)
    # Every requested byte that exists is sent, by Python's own slicing rules.
    for spec in specs:
        first, _, last = spec.partition("-")
        if not first:
            piece = DATA[-int(last) :]
        else:
            piece = DATA[int(first) : int(last) + 1] if last else DATA[int(first) :]
        assert piece in answer.content


def test_a_chunk_truncated_on_disk_after_its_check_is_dropped_and_refetched(
    edge: EdgeServer, tmp_path: Path
) -> None:
    """The chunk file shrinks after it was verified (a disk fault): the next lease sees
    it (one fstat), drops it and fills the chunk again, over HTTPS and over plain
    HTTP (sendfile) alike: never a 502 forever (#17.6)."""
    disk_only = EdgeServer(
        tmp_path,
        ThrowawayCA(),
        BUCKET,
        cache_config=CacheConfig(max_bytes=64 * 1024 * 1024),
    )
    disk_only.start()
    try:
        manifest = publish(edge)
        query = share_query(manifest.file_id, VERSION)
        with requests.Session() as session:
            session.trust_env = False
            session.verify = str(disk_only.ca_file)
            url = f"{disk_only.url}/f/{manifest.file_id}"
            assert session.get(url, params=query).content == DATA  # chunks on disk
            assert disk_only.context is not None
            # The answer's last byte waits for the check, not for the chunk's commit.
            disk_only.call(disk_only.context.cache.idle())
            path = disk_only.context.cache.path_for((manifest.file_id, version_tag(VERSION), 1))
            span = {"Range": f"bytes={CHUNK + 10}-{CHUNK + 5000}"}
            for base in (url, f"{disk_only.plain_url}/f/{manifest.file_id}"):
                os.truncate(path, 100)
                answer = session.get(base, params=query, headers=span, timeout=20)
                assert answer.status_code == 206
                assert answer.content == DATA[CHUNK + 10 : CHUNK + 5001]
                disk_only.call(disk_only.context.cache.idle())
                assert path.stat().st_size == CHUNK  # dropped and fetched again
            assert disk_only.context.cache.stats.damaged_files == 2
    finally:
        disk_only.stop()
