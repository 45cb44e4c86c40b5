"""Plans and delete against the moto server."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import requests
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.digests import chunks_digest
from fsnode_core.ids import new_id
from fsnode_core.models import FileRecord
from fsnode_core.published import Origin, VersionManifest
from fsnode_core.published_keys import version_manifest_key

from tests.integration.control_plane_helpers import (
    CHUNK,
    error_of,
    live_node,
    register,
    unique_path,
    upload,
)
from tests.integration.published_reads import read_head


def test_plan_lists_range_chunks_with_replicas_and_s3(cp_api: Any, cp_stack: Any) -> None:
    live_node(cp_api, cp_stack)
    live_node(cp_api, cp_stack)
    data = os.urandom(3 * CHUNK + 100)
    started, _ = upload(cp_api, data)
    file_id = started["file_id"]
    answer = cp_api.call("GET", f"/files/{file_id}/plan?offset={CHUNK + 5}&length={CHUNK}")
    assert answer.status_code == 200, answer.body
    plan = answer.json_body
    assert plan["version"] == started["version"] and plan["size"] == len(data)
    assert [c["index"] for c in plan["chunks"]] == [1, 2] and plan["next_offset"] is None
    assert plan["expires"] > time.time()
    for node in plan["nodes"]:
        url = urlsplit(node["url"])
        assert url.path == f"/f/{file_id}" and url.query == plan["edge_query"]
        assert dict(parse_qsl(url.query))["v"] == started["version"]
    for chunk in plan["chunks"]:
        # Replicas name nodes by index: no URL repeats per chunk.
        assert len(chunk["replicas"]) == 2
        assert all(0 <= i < len(plan["nodes"]) for i in chunk["replicas"])
        assert (
            chunk["sha256"]
            == hashlib.sha256(data[chunk["offset"] : chunk["offset"] + chunk["length"]]).hexdigest()
        )
        got = requests.get(
            plan["s3_url"],
            timeout=10,
            headers={"Range": f"bytes={chunk['offset']}-{chunk['offset'] + chunk['length'] - 1}"},
        )
        assert got.content == data[chunk["offset"] : chunk["offset"] + chunk["length"]]
    whole = cp_api.call("GET", f"/files/{file_id}/plan").json_body
    assert len(whole["chunks"]) == 4
    # Paged: a limit ends a page early and says where the next one starts.
    first = cp_api.call("GET", f"/files/{file_id}/plan?limit=3").json_body
    assert [c["index"] for c in first["chunks"]] == [0, 1, 2]
    assert first["next_offset"] == 3 * CHUNK
    rest = cp_api.call("GET", f"/files/{file_id}/plan?offset={first['next_offset']}").json_body
    assert [c["index"] for c in rest["chunks"]] == [3] and rest["next_offset"] is None


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("offset=-1", 400),
        ("offset=x", 400),
        ("length=0", 400),
        ("limit=0", 400),
        ("limit=10001", 400),
        (f"offset={10 * CHUNK}", 416),
    ],
)
def test_plan_rejects_bad_ranges(cp_api: Any, query: str, status: int) -> None:
    started, _ = upload(cp_api, os.urandom(100))
    answer = cp_api.call("GET", f"/files/{started['file_id']}/plan?{query}")
    assert answer.status_code == status, answer.body
    error_of(answer)


def test_plan_needs_the_api_key_and_a_known_file(cp_api: Any) -> None:
    assert cp_api.call("GET", f"/files/{'a' * 32}/plan", key=False).status_code == 401
    assert cp_api.call("GET", f"/files/{'a' * 32}/plan").status_code == 404
    assert cp_api.call("GET", "/files/..%2Fx/plan").status_code == 400


def put_published(
    stack: Any, chunks: int, chunk_size: int = CHUNK, path: str | None = None
) -> FileRecord:
    """A ready file of ``chunks`` chunks, written straight to the table and bucket (no
    bytes): its manifest in S3, its meta and path claim in DynamoDB."""
    file_id, version = new_id(), new_id()
    digests = [f"{i:064x}" for i in range(chunks)]
    meta = FileRecord(
        file_id=file_id,
        version=version,
        path=path or unique_path("big"),
        size=chunks * chunk_size,
        content_type="video/mp4",
        etag="e",
        last_modified=1,
        chunk_size=chunk_size,
        bucket=stack.env["FSNODE_BUCKET"],
        key=f"files/{file_id}/{version}",
        created_at=1,
        chunks_sha256=chunks_digest(digests),
        seq=1,
        published_seq=1,
    )
    manifest = VersionManifest(
        file_id=file_id,
        version=version,
        path=meta.path,
        size=meta.size,
        chunk_size=chunk_size,
        content_type=meta.content_type,
        etag="e",
        last_modified=1,
        source="upload",
        origin=Origin(meta.bucket, meta.key),
        chunk_sha256="".join(digests),
        chunks_sha256=meta.chunks_sha256,
    )
    boto3.client("s3").put_object(
        Bucket=meta.bucket, Key=version_manifest_key(file_id, version), Body=manifest.to_json()
    )
    ChunkCatalog(stack.env["FSNODE_CHUNKS_TABLE"], boto3.client("dynamodb")).put_import(meta)
    return meta


def test_plan_reads_dynamodb_a_fixed_number_of_times(cp_api: Any, cp_stack: Any) -> None:
    from chalicelib import aws

    live_node(cp_api, cp_stack)
    counts = []
    for chunks in (3, 2560):
        meta = put_published(cp_stack, chunks)
        sent: list[str] = []
        client = aws.client("dynamodb")

        def hook(request: Any, sent: list[str] = sent, **_: Any) -> None:
            sent.append(str(request.headers.get("X-Amz-Target", b"")))

        client.meta.events.register("before-send.dynamodb.*", hook)
        try:
            answer = cp_api.call("GET", f"/files/{meta.file_id}/plan")
        finally:
            client.meta.events.unregister("before-send.dynamodb.*", hook)
        assert answer.status_code == 200 and len(answer.json_body["chunks"]) == chunks
        assert answer.json_body["chunks"][-1]["sha256"] == f"{chunks - 1:064x}"
        counts.append(len(sent))
    # The meta GetItem, the page's replica Query and the nodes Scan (the second plan
    # within FSNODE_PLACEMENT_CACHE_SECONDS of the first takes the node list it read).
    assert counts[1] <= counts[0] <= 4, counts


def test_delete_tombstones_then_shares_and_manifests_are_gone(cp_api: Any, cp_stack: Any) -> None:
    live_node(cp_api, cp_stack)
    register(cp_api, cp_stack)
    path = unique_path()
    started, _ = upload(cp_api, os.urandom(100), path=path)
    file_id = started["file_id"]
    share = urlsplit(
        cp_api.call("POST", f"/files/{file_id}/share", {"ttl_seconds": 60}).json_body["share_url"]
    )
    assert cp_api.call("DELETE", f"/files/{file_id}", key=False).status_code == 401
    answer = cp_api.call("DELETE", f"/files/{file_id}")
    assert answer.status_code == 202, answer.body
    assert answer.json_body == {
        "file_id": file_id,
        "version": started["version"],
        "status": "deleting",
    }
    again = cp_api.call("DELETE", f"/files/{file_id}")
    assert again.status_code == 202 and again.json_body == answer.json_body
    assert cp_api.call("GET", f"{share.path}?{share.query}", key=False).status_code == 410
    head = read_head(cp_stack.env["FSNODE_BUCKET"], file_id)
    assert head is not None and head.status == "deleted" and head.version is None
    assert cp_api.call("GET", f"/files/{file_id}/plan").status_code == 410
    assert cp_api.call("POST", f"/files/{file_id}/share", {"ttl_seconds": 60}).status_code == 410
    listed = cp_api.call("GET", "/files?limit=1000").json_body
    assert file_id not in {f["file_id"] for f in listed["files"]}
    assert cp_api.call("DELETE", f"/files/{'b' * 32}").status_code == 404
    # The path is free again: an upload there is a new file.
    again_started, again_done = upload(cp_api, os.urandom(10), path=path)
    assert again_done.status_code == 200 and again_started["file_id"] != file_id
