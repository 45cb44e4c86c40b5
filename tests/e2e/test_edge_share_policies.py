"""End to end through the real control plane: v2 file shares (any current version; the
redirect pins one), ip-bound shares checked by the redirect and by the edge, and
imports hashed by the control plane's own job (never by an edge)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import requests

from fsnode.localstack.resources import LOCAL_CREDENTIALS
from fsnode.localstack.stack import StackInfo
from tests.e2e.cli_helpers import cli
from tests.helpers import wait_for

SIZE = 100_000  # one chunk each: lean


def api(stack: StackInfo, method: str, path: str, **body: Any) -> dict[str, Any]:
    answer = requests.request(
        method, f"{stack.api}{path}", json=body or None,
        headers={"authorization": f"Bearer {stack.api_key}"}, timeout=60,
    )  # fmt: skip
    assert answer.status_code < 300, answer.text
    return dict(answer.json())


def _import(stack: StackInfo) -> tuple[dict[str, Any], bytes]:
    s3 = boto3.client(
        "s3", endpoint_url=stack.aws_endpoint, region_name=stack.region, **LOCAL_CREDENTIALS
    )
    body = os.urandom(SIZE)
    key = f"imports/{os.urandom(8).hex()}/segment.ts"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    return api(stack, "POST", "/files/import", bucket=stack.bucket, key=key), body


def share_query(stack: StackInfo, file_id: str, **fields: Any) -> str:
    share = api(stack, "POST", f"/files/{file_id}/share", ttl_seconds=600, **fields)
    share_url: str = share["share_url"]
    return urlsplit(share_url).query


def open_share(stack: StackInfo, file_id: str, query: str) -> requests.Response:
    return requests.get(f"{stack.api}/s/{file_id}?{query}", allow_redirects=False, timeout=30)


def read_edge(stack: StackInfo, url: str) -> requests.Response:
    return requests.get(url, verify=stack.ca_cert, timeout=60)


def test_an_import_is_hashed_by_the_control_plane(stack: StackInfo) -> None:
    record, body = _import(stack)
    assert record["path"].endswith("/segment.ts") and record["content_type"] == "video/mp2t"
    redirect = open_share(stack, record["file_id"], share_query(stack, record["file_id"]))
    assert read_edge(stack, redirect.headers["Location"]).content == body
    # The import's hashing job (a Step Functions execution in the local stack) writes
    # the hashes into the version manifest; plans read them there.

    def hashed_plan() -> dict[str, Any] | None:
        plan = api(stack, "GET", f"/files/{record['file_id']}/plan")
        return plan if plan["chunks"][0]["sha256"] is not None else None

    plan = wait_for(hashed_plan, "the import's hashes in its plan")
    assert [c["sha256"] for c in plan["chunks"]] == [hashlib.sha256(body).hexdigest()]
    assert api(stack, "GET", f"/files/{record['file_id']}")["chunks_sha256"] is not None


def test_a_file_share_follows_its_path_and_the_pin_holds_a_version(
    stack: StackInfo, tmp_path: Path
) -> None:
    path = f"follow/{os.urandom(4).hex()}.bin"
    local = tmp_path / "v.bin"
    first_bytes = os.urandom(SIZE)
    local.write_bytes(first_bytes)
    up = cli(stack, "upload", str(local), "--path", path, "--share", "--ttl", "600")
    first = open_share(stack, up["id"], urlsplit(up["share_url"]).query)
    assert first.status_code == 307
    pinned_url = first.headers["Location"]
    assert dict(parse_qsl(urlsplit(pinned_url).query))["v"] == up["version"]
    assert read_edge(stack, pinned_url).content == first_bytes

    second_bytes = os.urandom(SIZE)
    local.write_bytes(second_bytes)
    cli(stack, "upload", str(local), "--path", path)
    # The same link opens the new version...
    out = tmp_path / "again.bin"
    cli(stack, "get", up["share_url"], "-o", str(out))
    assert out.read_bytes() == second_bytes
    # ...while the old pinned URL never hands out the new bytes (the edge learns of the
    # new version when it revalidates; until then it may still serve the old one).
    answer = read_edge(stack, pinned_url)
    assert answer.status_code in (200, 410), answer.text
    if answer.status_code == 200:
        assert answer.content == first_bytes


@pytest.mark.parametrize(("network", "allowed"), [("127.0.0.1/32", True), ("10.0.0.0/8", False)])
def test_an_ip_bound_share_is_checked_by_the_redirect_and_by_the_edge(
    stack: StackInfo, network: str, allowed: bool
) -> None:
    record, body = _import(stack)
    file_id = record["file_id"]
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
