"""Version tickets (``fsnode_core.version_tickets``): a pinned file share whose redirect
carries the control plane's signed word that the version was current answers a cold
request after one S3 read (the data), over real HTTPS against a real moto S3 server.

- No head is read for it; the version manifest is read once the first data bytes are
  in, and every chunk is checked against it before the chunk's last byte goes out: bad
  origin bytes, or a manifest that disagrees with the ticket, cut the body short.
- A ticket past the revalidation bound, or one for a version this edge has seen
  replaced, gives way to the head (410 for a replaced version).
- A forged, altered or misplaced ticket is 403.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from http import client as http_client
from urllib.parse import urlencode

import boto3
import pytest
import requests
from fsnode_core.published_keys import data_key
from fsnode_core.signing import ShareSigner, private_key_from_seed
from fsnode_core.version_tickets import VersionTicket, mint_ticket

from edge_node.manifest import Manifest
from tests.helpers import https_session
from tests.integration.edge_fixtures import EdgeServer, counted_edge
from tests.integration.edge_publishing import overwrite, put_file, share_query, signer

BUCKET = "fsnode-edge-tickets"
CHUNK = 64 * 1024
MAX_AGE = 30.0
V2 = "2" * 32
OTHER_SIGNER = ShareSigner("other", private_key_from_seed("another-keyring-seed-0123456789abcdef"))


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    with counted_edge(tmp_path_factory, BUCKET, MAX_AGE) as server:
        yield server


@pytest.fixture(scope="module")
def http(edge: EdgeServer) -> Iterator[requests.Session]:
    with https_session(edge.ca_file) as session:
        yield session


def ticket_for(
    manifest: Manifest,
    issued: float | None = None,
    by: ShareSigner | None = None,
    **changes: object,
) -> str:
    by = by or signer()
    ticket = VersionTicket(
        file_id=manifest.file_id,
        version=manifest.version,
        issued=int(time.time() if issued is None else issued),
        size=manifest.size,
        chunk_size=manifest.chunk_size,
        etag=manifest.etag,
        last_modified=manifest.last_modified,
        path=manifest.path,
        content_type=manifest.content_type,
        file_expires=0,
        kid=by.kid,
    )
    return mint_ticket(by, replace(ticket, **changes))  # type: ignore[arg-type]


def ticketed_query(manifest: Manifest, ticket: str) -> dict[str, str]:
    return {**share_query(manifest.file_id, manifest.version), "vt": ticket}


def reads(edge: EdgeServer) -> tuple[int, int]:
    return edge.published.head_reads, edge.published.manifest_reads


def test_a_ticketed_cold_request_reads_no_head_and_checks_the_manifest(
    edge: EdgeServer, http: requests.Session
) -> None:
    data = os.urandom(3 * CHUNK + 100)
    manifest = put_file(BUCKET, data, CHUNK, path="tickets/cold.mp4")
    heads, manifests = reads(edge)
    query = ticketed_query(manifest, ticket_for(manifest))
    url = f"{edge.url}/f/{manifest.file_id}"
    answer = http.get(url, params=query, headers={"Range": f"bytes={CHUNK + 5}-{CHUNK + 9000}"})
    assert answer.status_code == 206, answer.text
    assert answer.content == data[CHUNK + 5 : CHUNK + 9001]
    assert answer.headers["Content-Range"] == f"bytes {CHUNK + 5}-{CHUNK + 9000}/{len(data)}"
    assert answer.headers["Content-Type"] == "video/mp4"
    whole = http.get(url, params=query)
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["ETag"] == answer.headers["ETag"]
    # The ticket stood in for the head; the manifest was read (once) to check chunks.
    assert reads(edge) == (heads, manifests + 1)
    # The same version through an unticketed request reads the head as ever.
    plain = http.get(url, params=share_query(manifest.file_id, manifest.version))
    assert plain.content == data
    assert reads(edge)[0] == heads + 1


def test_bad_origin_bytes_under_a_ticket_cut_the_body_short(edge: EdgeServer) -> None:
    data = os.urandom(CHUNK)
    manifest = put_file(BUCKET, data, CHUNK, path="tickets/damaged.mp4")
    damaged = bytearray(data)
    damaged[100] ^= 0xFF
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=data_key(manifest.file_id, manifest.version), Body=bytes(damaged)
    )
    query = ticketed_query(manifest, ticket_for(manifest))
    body, status = read_raw(edge, f"/f/{manifest.file_id}", query)
    # Either refused before the status line, or cut before the chunk's last byte: a
    # client never sees a complete body with the damaged bytes.
    assert status == 502 or len(body) < len(data), status


def test_a_manifest_that_disagrees_with_the_ticket_cuts_the_body_short(edge: EdgeServer) -> None:
    data = os.urandom(2 * CHUNK)
    manifest = put_file(BUCKET, data, CHUNK, path="tickets/disagrees.mp4")
    query = ticketed_query(manifest, ticket_for(manifest, etag="not-the-etag"))
    body, status = read_raw(edge, f"/f/{manifest.file_id}", query)
    assert status == 502 or len(body) < len(data), status


def test_an_old_ticket_gives_way_to_the_head(edge: EdgeServer, http: requests.Session) -> None:
    old, new = os.urandom(CHUNK + 10), os.urandom(CHUNK + 20)
    manifest = put_file(BUCKET, old, CHUNK, path="tickets/old.mp4")
    overwrite(BUCKET, manifest, new, V2)
    url = f"{edge.url}/f/{manifest.file_id}"
    stale = ticket_for(manifest, issued=time.time() - MAX_AGE - 1)
    refused = http.get(url, params=ticketed_query(manifest, stale))
    assert refused.status_code == 410, refused.text
    assert refused.json()["error"]["message"] == "replaced; open the share URL again"
    # A fresh ticket for the version this edge has now seen replaced: the head decides.
    fresh = ticket_for(manifest)
    assert http.get(url, params=ticketed_query(manifest, fresh)).status_code == 410


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("another key", "share URL names an unknown signing key"),
        ("altered", "share URL signature is not valid"),
        ("another version", "the version ticket is for another file or version"),
        ("malformed", "share URL has a malformed version ticket"),
        ("no pin", "share URL has a version ticket without a version pin"),
    ],
)
def test_bad_tickets_are_refused(
    edge: EdgeServer, http: requests.Session, case: str, expected: str
) -> None:
    manifest = put_file(BUCKET, os.urandom(100), CHUNK, path=f"tickets/bad-{case}.mp4")
    query = ticketed_query(manifest, ticket_for(manifest))
    payload, _, sig = query["vt"].partition(".")
    if case == "another key":
        query["vt"] = ticket_for(
            manifest,
            by=OTHER_SIGNER,
        )
    elif case == "altered":
        query["vt"] = ticket_for(manifest, size=99).partition(".")[0] + "." + sig
    elif case == "another version":
        query["vt"] = ticket_for(manifest, version=V2)
    elif case == "malformed":
        query["vt"] = payload + "=." + sig
    else:
        del query["v"]
    answer = http.get(f"{edge.url}/f/{manifest.file_id}", params=query)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["message"] == expected


def read_raw(edge: EdgeServer, path: str, query: dict[str, str]) -> tuple[bytes, int]:
    """A GET that keeps whatever body arrived when the connection was cut."""
    conn = http_client.HTTPSConnection("127.0.0.1", edge.port, context=edge.client_ssl())
    try:
        conn.request("GET", f"{path}?{urlencode(query)}")
        answer = conn.getresponse()
        body = b""
        try:
            while block := answer.read1(65536):
                body += block
        except (http_client.IncompleteRead, ConnectionError) as exc:
            body += getattr(exc, "partial", b"")
        return body, answer.status
    finally:
        conn.close()
