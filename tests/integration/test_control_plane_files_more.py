"""Plans, delete, import and edge-reported hashes against the moto server."""

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
from fsnode_core.ids import new_id
from fsnode_core.models import ChunkRecord, FileRecord
from test_control_plane_files import CHUNK, _live_node, upload
from test_control_plane_nodes import error_of, register


def _node_auth(node: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {node['credential']}"}


def test_plan_lists_range_chunks_with_replicas_and_s3(cp_api: Any, cp_stack: Any) -> None:
    _live_node(cp_api, cp_stack)
    _live_node(cp_api, cp_stack)
    data = os.urandom(3 * CHUNK + 100)
    started, _ = upload(cp_api, data)
    file_id = started["file_id"]
    answer = cp_api.call("GET", f"/files/{file_id}/plan?offset={CHUNK + 5}&length={CHUNK}")
    assert answer.status_code == 200, answer.body
    plan = answer.json_body
    assert plan["version"] == started["version"] and plan["size"] == len(data)
    assert [c["index"] for c in plan["chunks"]] == [1, 2]
    assert plan["expires"] > time.time()
    for chunk in plan["chunks"]:
        assert len(chunk["replicas"]) == 2
        assert chunk["sha256"] == hashlib.sha256(
            data[chunk["offset"]:chunk["offset"] + chunk["length"]]).hexdigest()
        url = urlsplit(chunk["replicas"][0]["url"])
        assert url.path == f"/f/{file_id}" and url.query == plan["edge_query"]
        assert dict(parse_qsl(url.query))["v"] == started["version"]
        got = requests.get(chunk["s3_url"], timeout=10,
                           headers={"Range": f"bytes={chunk['offset']}-"
                                             f"{chunk['offset'] + chunk['length'] - 1}"})
        assert got.content == data[chunk["offset"]:chunk["offset"] + chunk["length"]]
    whole = cp_api.call("GET", f"/files/{file_id}/plan").json_body
    assert len(whole["chunks"]) == 4


@pytest.mark.parametrize(("query", "status"), [("offset=-1", 400), ("offset=x", 400),
                                               ("length=0", 400),
                                               (f"offset={10 * CHUNK}", 416)])
def test_plan_rejects_bad_ranges(cp_api: Any, query: str, status: int) -> None:
    started, _ = upload(cp_api, os.urandom(100))
    answer = cp_api.call("GET", f"/files/{started['file_id']}/plan?{query}")
    assert answer.status_code == status, answer.body
    error_of(answer)


def test_plan_needs_the_api_key_and_a_known_file(cp_api: Any) -> None:
    assert cp_api.call("GET", f"/files/{'a' * 32}/plan", key=False).status_code == 401
    assert cp_api.call("GET", f"/files/{'a' * 32}/plan").status_code == 404
    assert cp_api.call("GET", "/files/..%2Fx/plan").status_code == 400


def test_plan_reads_dynamodb_a_fixed_number_of_times(cp_api: Any, cp_stack: Any) -> None:
    from chalicelib import aws

    _live_node(cp_api, cp_stack)
    catalog = ChunkCatalog(cp_stack.env["FSNODE_CHUNKS_TABLE"], boto3.client("dynamodb"))
    counts = []
    for chunks in (3, 2560):
        file_id, version = new_id(), new_id()
        size = chunks * CHUNK
        catalog.put_import(
            FileRecord(file_id=file_id, version=version, name="big", size=size,
                       content_type="video/mp4", etag="e", last_modified=1, chunk_size=CHUNK,
                       bucket=cp_stack.env["FSNODE_BUCKET"], key="k", created_at=1),
            [ChunkRecord(file_id, version, i, i * CHUNK, CHUNK, f"{i:064x}")
             for i in range(chunks)])
        sent: list[str] = []
        client = aws.client("dynamodb")

        def hook(request: Any, sent: list[str] = sent, **_: Any) -> None:
            sent.append(str(request.headers.get("X-Amz-Target", b"")))

        client.meta.events.register("before-send.dynamodb.*", hook)
        try:
            answer = cp_api.call("GET", f"/files/{file_id}/plan")
        finally:
            client.meta.events.unregister("before-send.dynamodb.*", hook)
        assert answer.status_code == 200 and len(answer.json_body["chunks"]) == chunks
        assert not any("GetItem" in target for target in sent), sent
        counts.append(len(sent))
    assert counts[1] <= counts[0] + 2 and counts[1] <= 5, counts


def test_delete_tombstones_then_shares_and_manifests_are_gone(cp_api: Any,
                                                              cp_stack: Any) -> None:
    _live_node(cp_api, cp_stack)
    node = register(cp_api, cp_stack)
    started, _ = upload(cp_api, os.urandom(100))
    file_id = started["file_id"]
    share = urlsplit(cp_api.call("POST", f"/files/{file_id}/share",
                                 {"ttl_seconds": 60}).json_body["share_url"])
    assert cp_api.call("DELETE", f"/files/{file_id}", key=False).status_code == 401
    answer = cp_api.call("DELETE", f"/files/{file_id}")
    assert answer.status_code == 202, answer.body
    assert answer.json_body == {"file_id": file_id, "version": started["version"],
                                "status": "deleting"}
    again = cp_api.call("DELETE", f"/files/{file_id}")
    assert again.status_code == 202 and again.json_body == answer.json_body
    assert cp_api.call("GET", f"{share.path}?{share.query}", key=False).status_code == 410
    manifest = cp_api.call("GET", f"/nodes/{node['node_id']}/files/{file_id}", key=False,
                           headers=_node_auth(node))
    assert manifest.status_code == 410
    assert cp_api.call("GET", f"/files/{file_id}/plan").status_code == 410
    assert cp_api.call("POST", f"/files/{file_id}/share",
                       {"ttl_seconds": 60}).status_code == 410
    listed = cp_api.call("GET", "/files?limit=1000").json_body
    assert file_id not in {f["file_id"] for f in listed["files"]}
    assert cp_api.call("DELETE", f"/files/{'b' * 32}").status_code == 404


def _put_object(stack: Any, data: bytes) -> tuple[str, dict[str, Any]]:
    key = f"imports/{new_id()}.mp4"
    put = boto3.client("s3").put_object(Bucket=stack.env["FSNODE_BUCKET"], Key=key, Body=data,
                                        ContentType="video/mp4")
    return key, put


def test_import_pins_the_object_and_edges_record_hashes(cp_api: Any, cp_stack: Any) -> None:
    data = os.urandom(2 * CHUNK + 3)
    key, put = _put_object(cp_stack, data)
    bucket = cp_stack.env["FSNODE_BUCKET"]
    answer = cp_api.call("POST", "/files/import", {"bucket": bucket, "key": key,
                                                   "etag": put["ETag"].strip('"')})
    assert answer.status_code == 200, answer.body
    record = answer.json_body
    assert record["source"] == "import" and record["size"] == len(data)
    retry = cp_api.call("POST", "/files/import", {"bucket": bucket, "key": key,
                                                  "etag": put["ETag"].strip('"')})
    assert retry.status_code == 200 and retry.json_body == record
    assert record["key"] == key and record["content_type"] == "video/mp4"
    node = register(cp_api, cp_stack)
    path = f"/nodes/{node['node_id']}/files/{record['file_id']}"
    manifest = cp_api.call("GET", path, key=False, headers=_node_auth(node)).json_body
    assert [c["sha256"] for c in manifest["chunks"]] == [None, None, None]
    digest = hashlib.sha256(data[:CHUNK]).hexdigest()
    body = {"version": record["version"], "sha256": digest}
    first = cp_api.call("PUT", f"{path}/chunks/0", body, key=False, headers=_node_auth(node))
    assert first.status_code == 200 and first.json_body["recorded"] is True, first.body
    same = cp_api.call("PUT", f"{path}/chunks/0", body, key=False, headers=_node_auth(node))
    assert same.status_code == 200 and same.json_body["recorded"] is False
    other = cp_api.call("PUT", f"{path}/chunks/0", {**body, "sha256": "0" * 64}, key=False,
                        headers=_node_auth(node))
    assert other.status_code == 409
    assert cp_api.call("PUT", f"{path}/chunks/9", body, key=False,
                       headers=_node_auth(node)).status_code == 404
    assert cp_api.call("PUT", f"{path}/chunks/x", body, key=False,
                       headers=_node_auth(node)).status_code == 400
    assert cp_api.call("PUT", f"{path}/chunks/1", {**body, "sha256": "XY"}, key=False,
                       headers=_node_auth(node)).status_code == 400
    assert cp_api.call("PUT", f"{path}/chunks/1", body, key=False).status_code == 401
    manifest = cp_api.call("GET", path, key=False, headers=_node_auth(node)).json_body
    assert [c["sha256"] for c in manifest["chunks"]] == [digest, None, None]


def test_import_refuses_missing_mismatched_and_foreign_objects(cp_api: Any,
                                                              cp_stack: Any) -> None:
    key, _ = _put_object(cp_stack, b"x" * 10)
    bucket = cp_stack.env["FSNODE_BUCKET"]
    cases = [
        ({"bucket": bucket, "key": "nope/missing"}, 404),
        ({"bucket": bucket, "key": key, "etag": "0" * 32}, 409),
        ({"bucket": bucket, "key": key, "etag": "a" * 32, "version_id": "v"}, 400),
        ({"bucket": bucket}, 400),
        ({"bucket": "someone-elses-bucket", "key": key}, 403),
    ]
    for body, status in cases:
        answer = cp_api.call("POST", "/files/import", body)
        assert answer.status_code == status, (body, answer.body)
        error_of(answer)
    assert cp_api.call("POST", "/files/import", {"bucket": bucket, "key": key},
                       key=False).status_code == 401


def test_import_pins_a_version_id_in_a_versioned_bucket(cp_api: Any, cp_stack: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import aws

    s3 = boto3.client("s3")
    bucket = f"fsnode-test-versioned-{new_id()[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="v.mp4", Body=b"a" * 10)["VersionId"]
    s3.put_object(Bucket=bucket, Key="v.mp4", Body=b"b" * 20)
    monkeypatch.setenv("FSNODE_IMPORT_BUCKETS", f"{cp_stack.env['FSNODE_BUCKET']},{bucket}")
    aws.reset()
    answer = cp_api.call("POST", "/files/import", {"bucket": bucket, "key": "v.mp4",
                                                   "version_id": first})
    assert answer.status_code == 200, answer.body
    assert answer.json_body["version_id"] == first and answer.json_body["size"] == 10
    plan = cp_api.call("GET", f"/files/{answer.json_body['file_id']}/plan").json_body
    assert requests.get(plan["chunks"][0]["s3_url"], timeout=10).content == b"a" * 10
    missing = cp_api.call("POST", "/files/import", {"bucket": bucket, "key": "v.mp4",
                                                    "version_id": "no-such-version"})
    assert missing.status_code in (400, 404), missing.body
    error_of(missing)


def test_a_warm_report_fixes_an_imported_chunks_hash(cp_api: Any, cp_client: Any,
                                                     cp_stack: Any) -> None:
    data = os.urandom(100)
    key, _ = _put_object(cp_stack, data)
    record = cp_api.call("POST", "/files/import", {"bucket": cp_stack.env["FSNODE_BUCKET"],
                                                   "key": key}).json_body
    node = register(cp_api, cp_stack)
    catalog = ChunkCatalog(cp_stack.env["FSNODE_CHUNKS_TABLE"], boto3.client("dynamodb"))
    digest = hashlib.sha256(data).hexdigest()
    for reported, recorded in (("0" * 64 + "x", False), (digest, True), ("1" * 64, False)):
        queued = cp_client.lambda_.invoke("warm_chunk", {
            "file_id": record["file_id"], "version": record["version"], "chunk_index": 0,
            "node_id": node["node_id"], "task_token": f"token-{reported[:4]}"}).payload
        answer = cp_api.call("POST", f"/nodes/{node['node_id']}/work/{queued['work_id']}",
                             {"ok": True, "sha256": reported}, key=False,
                             headers=_node_auth(node))
        assert answer.status_code == 200 and answer.json_body["recorded"] is recorded, reported
        assert catalog.file_view(record["file_id"]).chunks[0].sha256 == (
            digest if recorded or reported != "0" * 64 + "x" else None)
