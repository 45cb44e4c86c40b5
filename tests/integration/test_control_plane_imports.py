"""Import (an object already in the bucket, pinned) and the control plane's own hashing
of it, against the moto server."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import boto3
import pytest
import requests
from fsnode_core.digests import chunks_digest
from fsnode_core.errors import Conflict
from fsnode_core.ids import new_id

from tests.integration.control_plane_helpers import (
    CHUNK,
    chunk_catalog,
    error_of,
    node_auth,
    put_import_object,
    register,
    unique_path,
    upload,
)
from tests.integration.published_reads import current_manifest, read_manifest


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
    catalog = chunk_catalog(cp_stack)
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
    catalog = chunk_catalog(cp_stack)
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
    manifest = read_manifest(cp_stack.env["FSNODE_BUCKET"], record["file_id"], record["version"])
    assert manifest.chunk_sha256 is None  # a warm report writes no hash


def test_rehash_without_a_state_machine_runs_in_the_request(cp_api: Any) -> None:
    data = os.urandom(CHUNK + 5)
    started, _ = upload(cp_api, data)
    answer = cp_api.call("POST", f"/files/{started['file_id']}/rehash")
    assert answer.status_code == 202, answer.body
    assert answer.json_body["execution"] is None
    # The declared hashes were right: nothing to repair.
    assert answer.json_body["outcome"]["outcome"] == "unchanged"
    assert answer.json_body["outcome"]["chunks"] == 2
