"""End to end through the real control plane: prefix and ip-bound shares of
imported files, checked by the control plane's redirect and again by the edge, and
the chunk hashes the edge records for imports on their first fetch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests

from fsnode.localstack.resources import LOCAL_CREDENTIALS
from fsnode.localstack.stack import StackInfo
from tests.e2e.cli_helpers import require_route

SIZE = 100_000  # one chunk each: lean


def api(stack: StackInfo, method: str, path: str, **body: Any) -> dict[str, Any]:
    answer = requests.request(
        method, f"{stack.api}{path}", json=body or None,
        headers={"authorization": f"Bearer {stack.api_key}"}, timeout=60,
    )  # fmt: skip
    assert answer.status_code < 300, answer.text
    return dict(answer.json())


@pytest.fixture(scope="module")
def folder(stack: StackInfo) -> Iterator[dict[str, tuple[str, bytes]]]:
    """Three imported objects: two in one "folder" (by name), one outside it."""
    require_route(stack, "PUT", "/nodes/{node_id}/files/{file_id}/chunks/{index}")
    s3 = boto3.client(
        "s3", endpoint_url=stack.aws_endpoint, region_name=stack.region, **LOCAL_CREDENTIALS
    )
    tag = os.urandom(4).hex()
    files: dict[str, tuple[str, bytes]] = {}
    for label, name in (
        ("playlist", f"hls-{tag}/ep1/index.m3u8"),
        ("segment", f"hls-{tag}/ep1/seg-000.ts"),
        ("outside", f"hls-{tag}/ep2/seg-000.ts"),
    ):
        body = os.urandom(SIZE)
        key = f"imports/{tag}/{label}"
        s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
        record = api(stack, "POST", "/files/import", bucket=stack.bucket, key=key, name=name)
        files[label] = (record["file_id"], body)
    yield files


def share_query(stack: StackInfo, file_id: str, **fields: Any) -> str:
    share = api(stack, "POST", f"/files/{file_id}/share", ttl_seconds=600, **fields)
    return urlsplit(share["share_url"]).query


def open_share(stack: StackInfo, file_id: str, query: str) -> requests.Response:
    return requests.get(f"{stack.api}/s/{file_id}?{query}", allow_redirects=False, timeout=30)


def read_edge(stack: StackInfo, url: str) -> requests.Response:
    return requests.get(url, verify=stack.ca_cert, timeout=60)


def test_a_prefix_share_opens_every_file_in_its_folder(
    stack: StackInfo, folder: dict[str, tuple[str, bytes]]
) -> None:
    playlist_id = folder["playlist"][0]
    prefix = api(stack, "GET", f"/files/{playlist_id}")["name"].rsplit("/", 1)[0] + "/"
    query = share_query(stack, playlist_id, prefix=prefix)

    for label in ("playlist", "segment"):
        file_id, body = folder[label]
        redirect = open_share(stack, file_id, query)
        assert redirect.status_code == 307, redirect.text
        answer = read_edge(stack, redirect.headers["Location"])
        assert (answer.status_code, answer.content) == (200, body)
        assert answer.headers["Cache-Control"] == "private, no-cache"

    # Outside the folder: the control plane refuses to redirect, and the edge refuses
    # the same signature sent straight to it.
    outside_id = folder["outside"][0]
    assert open_share(stack, outside_id, query).status_code == 403
    location = open_share(stack, folder["segment"][0], query).headers["Location"]
    edge = location.split("/f/")[0]
    refused = read_edge(stack, f"{edge}/f/{outside_id}?{query}")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"


def test_the_edge_records_an_imported_chunk_hash_on_first_fetch(
    stack: StackInfo, folder: dict[str, tuple[str, bytes]]
) -> None:
    file_id, body = folder["segment"]
    redirect = open_share(stack, file_id, share_query(stack, file_id))
    assert read_edge(stack, redirect.headers["Location"]).content == body
    plan = api(stack, "GET", f"/files/{file_id}/plan")
    assert [chunk["sha256"] for chunk in plan["chunks"]] == [hashlib.sha256(body).hexdigest()]


@pytest.mark.parametrize(("network", "allowed"), [("127.0.0.1/32", True), ("10.0.0.0/8", False)])
def test_an_ip_bound_share_is_checked_by_the_redirect_and_by_the_edge(
    stack: StackInfo, folder: dict[str, tuple[str, bytes]], network: str, allowed: bool
) -> None:
    file_id, body = folder["playlist"]
    query = share_query(stack, file_id, ip=network)
    redirect = open_share(stack, file_id, query)
    if allowed:
        assert redirect.status_code == 307, redirect.text
        assert read_edge(stack, redirect.headers["Location"]).content == body
        return
    assert redirect.status_code == 403
    # Sent straight to an edge, the signature still binds the client's address.
    for edge in stack.edges:
        answer = read_edge(stack, f"{edge.url}/f/{file_id}?{query}")
        assert answer.status_code == 403, answer.text
