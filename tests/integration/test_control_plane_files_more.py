"""Plans, delete, import and the control plane's own hashing against the moto server."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import requests
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.digests import chunks_digest
from fsnode_core.errors import Conflict
from fsnode_core.ids import new_id
from fsnode_core.models import FileRecord
from fsnode_core.published import Origin, VersionManifest
from fsnode_core.published_keys import version_manifest_key

from tests.integration.control_plane_helpers import (
    CHUNK,
    error_of,
    live_node,
    node_auth,
    put_import_object,
    register,
    unique_path,
    upload,
)
from tests.integration.published_reads import current_manifest, read_head


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
    # The meta GetItem, the page's replica Query and the nodes Scan.
    assert counts[1] == counts[0] <= 4, counts


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


def run_hashing(cp_client: Any, file_id: str, version: str, mode: str = "import") -> Any:
    """The hashing job's three Lambdas, in the order its state machine runs them."""
    job = {"file_id": file_id, "version": version, "mode": mode}
    planned = cp_client.lambda_.invoke("plan_hashing", job).payload
    for batch in planned["batches"]:
        done = cp_client.lambda_.invoke("hash_batch", batch).payload
        assert done["chunks"] == batch["count"], done
    return cp_client.lambda_.invoke("finish_hashing", job).payload


def test_import_pins_the_object_and_the_control_plane_hashes_it(
    cp_api: Any, cp_client: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import aws

    monkeypatch.setenv("FSNODE_HASH_BATCH_BYTES", str(2 * CHUNK))  # two batches
    aws.reset()
    data = os.urandom(3 * CHUNK + 3)
    key, put = put_import_object(cp_stack, data)
    bucket = cp_stack.env["FSNODE_BUCKET"]
    answer = cp_api.call(
        "POST", "/files/import", {"bucket": bucket, "key": key, "etag": put["ETag"].strip('"')}
    )
    assert answer.status_code == 200, answer.body
    record = answer.json_body
    assert record["source"] == "import" and record["size"] == len(data)
    assert record["path"] == key and record["chunks_sha256"] is None
    retry = cp_api.call(
        "POST", "/files/import", {"bucket": bucket, "key": key, "etag": put["ETag"].strip('"')}
    )
    assert retry.status_code == 200 and retry.json_body == record
    assert record["key"] == key and record["content_type"] == "video/mp4"
    node = register(cp_api, cp_stack)
    route = f"/nodes/{node['node_id']}/files/{record['file_id']}"
    manifest = current_manifest(bucket, record["file_id"])
    assert manifest is not None and manifest.chunk_sha256 is None
    assert manifest.origin.etag == put["ETag"].strip('"')  # edges pin their reads to it
    # Edges never write hashes, nor read manifests from the control plane: no route.
    for method, tail in (("PUT", "/chunks/0"), ("GET", "")):
        assert cp_api.call(
            method,
            f"{route}{tail}",
            {"sha256": "0" * 64} if tail else None,
            key=False,
            headers=node_auth(node),
        ).status_code in (403, 404, 405)
    outcome = run_hashing(cp_client, record["file_id"], record["version"])
    assert outcome["outcome"] == "hashed" and outcome["chunks"] == 4
    digests = [hashlib.sha256(data[i : i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)]
    hashed = current_manifest(bucket, record["file_id"])
    assert hashed is not None and hashed.chunk_hashes() == digests
    assert cp_api.call("GET", f"/files/{record['file_id']}").json_body[
        "chunks_sha256"
    ] == chunks_digest(digests)
    # A second run changes nothing; the batch items are gone.
    assert run_hashing(cp_client, record["file_id"], record["version"])["outcome"] == "unchanged"
    catalog = ChunkCatalog(cp_stack.env["FSNODE_CHUNKS_TABLE"], boto3.client("dynamodb"))
    assert catalog.hash_batches(record["file_id"], record["version"]) == {}


def test_a_replaced_import_object_fails_the_hashing_job(
    cp_api: Any, cp_client: Any, cp_stack: Any
) -> None:
    key, _ = put_import_object(cp_stack, os.urandom(100))
    record = cp_api.call(
        "POST", "/files/import", {"bucket": cp_stack.env["FSNODE_BUCKET"], "key": key}
    ).json_body
    put_import_object(cp_stack, os.urandom(100), key=key)  # replaced under the same key
    job = {"file_id": record["file_id"], "version": record["version"], "mode": "import"}
    batch = cp_client.lambda_.invoke("plan_hashing", job).payload["batches"][0]
    with pytest.raises(Conflict, match="changed"):  # the job fails; the step is not retried
        cp_client.lambda_.invoke("hash_batch", batch)


def test_import_paths_and_types(cp_api: Any, cp_stack: Any) -> None:
    bucket = cp_stack.env["FSNODE_BUCKET"]
    key, _ = put_import_object(
        cp_stack,
        b"#EXTM3U\n",
        content_type="binary/octet-stream",
        key=f"imports/{new_id()}/index.m3u8",
    )
    path = unique_path("hls/index.m3u8")
    record = cp_api.call(
        "POST", "/files/import", {"bucket": bucket, "key": key, "path": path}
    ).json_body
    # No type stored with the object: the extension names it.
    assert record["path"] == path and record["content_type"] == "application/vnd.apple.mpegurl"
    assert record["name"] == "index.m3u8"
    listed = cp_api.call("GET", f"/files?prefix={path.rsplit('/', 1)[0]}/").json_body["files"]
    assert [f["file_id"] for f in listed] == [record["file_id"]]
    other, _ = put_import_object(cp_stack, b"x")
    taken = cp_api.call("POST", "/files/import", {"bucket": bucket, "key": other, "path": path})
    assert taken.status_code == 409 and error_of(taken)["code"] == "conflict"
    odd, _ = put_import_object(cp_stack, b"y", key=f"imports//{new_id()}")
    assert cp_api.call("POST", "/files/import", {"bucket": bucket, "key": odd}).status_code == 400
    named = cp_api.call(
        "POST", "/files/import", {"bucket": bucket, "key": odd, "path": unique_path("y")}
    )
    assert named.status_code == 200, named.body
    for bad in ("../x", "a//b", "/abs", "a\x00b", "", "x" * 901):
        answer = cp_api.call("POST", "/files/import", {"bucket": bucket, "key": other, "path": bad})
        assert answer.status_code == 400, bad
        assert error_of(answer)["details"]["field"] == "path"


def test_import_refuses_missing_mismatched_and_foreign_objects(cp_api: Any, cp_stack: Any) -> None:
    key, _ = put_import_object(cp_stack, b"x" * 10)
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
    assert (
        cp_api.call("POST", "/files/import", {"bucket": bucket, "key": key}, key=False).status_code
        == 401
    )


def test_import_pins_a_version_id_in_a_versioned_bucket(
    cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import aws

    s3 = boto3.client("s3")
    bucket = f"fsnode-test-versioned-{new_id()[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="v.mp4", Body=b"a" * 10)["VersionId"]
    s3.put_object(Bucket=bucket, Key="v.mp4", Body=b"b" * 20)
    monkeypatch.setenv("FSNODE_IMPORT_BUCKETS", f"{cp_stack.env['FSNODE_BUCKET']},{bucket}")
    aws.reset()
    answer = cp_api.call(
        "POST",
        "/files/import",
        {"bucket": bucket, "key": "v.mp4", "version_id": first, "path": unique_path("v.mp4")},
    )
    assert answer.status_code == 200, answer.body
    assert answer.json_body["version_id"] == first and answer.json_body["size"] == 10
    plan = cp_api.call("GET", f"/files/{answer.json_body['file_id']}/plan").json_body
    assert requests.get(plan["s3_url"], timeout=10).content == b"a" * 10
    missing = cp_api.call(
        "POST", "/files/import", {"bucket": bucket, "key": "v.mp4", "version_id": "no-such-version"}
    )
    assert missing.status_code in (400, 404), missing.body
    error_of(missing)


def test_a_warm_report_of_an_unhashed_chunk_is_checked_against_s3(
    cp_api: Any, cp_client: Any, cp_stack: Any
) -> None:
    data = os.urandom(100)
    key, _ = put_import_object(cp_stack, data)
    record = cp_api.call(
        "POST", "/files/import", {"bucket": cp_stack.env["FSNODE_BUCKET"], "key": key}
    ).json_body
    node = register(cp_api, cp_stack)
    catalog = ChunkCatalog(cp_stack.env["FSNODE_CHUNKS_TABLE"], boto3.client("dynamodb"))
    digest = hashlib.sha256(data).hexdigest()
    # A poisoned hash is never recorded, not even first: the origin's bytes decide.
    for reported, recorded in (("1" * 64, False), ("0" * 64 + "x", False), (digest, True)):
        queued = cp_client.lambda_.invoke(
            "warm_chunk",
            {
                "file_id": record["file_id"],
                "version": record["version"],
                "chunks": [0],
                "node_id": node["node_id"],
                "task_token": f"token-{reported[:4]}",
            },
        ).payload
        answer = cp_api.call(
            "POST",
            f"/nodes/{node['node_id']}/work/{queued['work_id']}",
            {"ok": True, "sha256": reported},
            key=False,
            headers=node_auth(node),
        )
        assert answer.status_code == 200 and answer.json_body["recorded"] is recorded, reported
    view = catalog.file_view(record["file_id"])
    assert [r.node_id for r in view.replicas] == [node["node_id"]]
    manifest = json.loads(
        boto3.client("s3")
        .get_object(
            Bucket=cp_stack.env["FSNODE_BUCKET"],
            Key=version_manifest_key(record["file_id"], record["version"]),
        )["Body"]
        .read()
    )
    assert manifest["chunk_sha256"] is None  # a warm report writes no hash


def test_rehash_without_a_state_machine_runs_in_the_request(cp_api: Any) -> None:
    data = os.urandom(CHUNK + 5)
    started, _ = upload(cp_api, data)
    answer = cp_api.call("POST", f"/files/{started['file_id']}/rehash")
    assert answer.status_code == 202, answer.body
    assert answer.json_body["execution"] is None
    # The declared hashes were right: nothing to repair.
    assert answer.json_body["outcome"]["outcome"] == "unchanged"
    assert answer.json_body["outcome"]["chunks"] == 2
