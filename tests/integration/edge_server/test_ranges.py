"""Range sets at the edge (RFC 9110 section 14): multipart answers, their caps and
coalescing, validators and preconditions, and any range set against Python slicing."""

from __future__ import annotations

import itertools
import re

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_node.manifest import Manifest
from edge_node.ranges import MAX_PARTS
from tests.integration.edge_fixtures import EdgeServer
from tests.integration.edge_publishing import VERSION, share_query
from tests.integration.edge_server.served import (
    DATA,
    byte_ranges,
    file_url,
    multipart,
    publish,
)


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
        start, _, end = spec.partition("-")
        if not start:
            piece = DATA[-int(end) :]
        else:
            piece = DATA[int(start) : int(end) + 1] if end else DATA[int(start) :]
        assert piece in answer.content
