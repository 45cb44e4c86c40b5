"""Retirement with a grace period, publishing, hashing and hash repair, through the real
state machines (moto's interpreter, in-process Lambdas): a replaced or deleted version's
bytes and manifest stay readable for ``FSNODE_RETIRE_GRACE_SECONDS`` (seconds here),
then garbage collection removes them and the published objects with them."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from fsnode_core.published_keys import head_key, tree_folder_prefix, version_manifest_key

from tests.helpers import wait_for
from tests.integration.control_plane_helpers import (
    CHUNK,
    chunk_hashes,
    part_hashes,
    put_import_object,
    unique_path,
    upload,
)
from tests.integration.lifecycle_fixtures import isolated_fixture, machines_fixture, pump  # noqa: F401
from tests.integration.published_reads import read_manifest

GRACE = 3


@pytest.fixture()
def grace(machines: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    from chalicelib import aws

    monkeypatch.setenv("FSNODE_RETIRE_GRACE_SECONDS", str(GRACE))
    aws.reset()
    return GRACE


def _exists(stack: Any, key: str) -> bool:
    try:
        boto3.client("s3").head_object(Bucket=stack.env["FSNODE_BUCKET"], Key=key)
    except ClientError:
        return False
    return True


def _tree(stack: Any, path: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(
        Bucket=stack.env["FSNODE_BUCKET"], Prefix=tree_folder_prefix(path + "!")
    )
    return [o["Key"] for o in listed.get("Contents", [])]


def _execution(machine: str, name: str) -> str:
    return machine.replace(":stateMachine:", ":execution:") + f":{name}"


def _settled(machines: Any, file_id: str, seq: int) -> None:
    status = machines.wait(_execution(machines.arns["publish"], f"publish-{file_id}-{seq}"))
    assert status["status"] == "SUCCEEDED", status


def _seq(stack: Any, file_id: str) -> int:
    raw = (
        boto3.client("s3")
        .get_object(Bucket=stack.env["FSNODE_BUCKET"], Key=head_key(file_id))["Body"]
        .read()
    )
    return int(json.loads(raw)["seq"])


def test_a_replaced_version_is_kept_for_the_grace_period_then_collected(
    cp_api: Any, cp_stack: Any, machines: Any, grace: int
) -> None:
    from chalicelib import prune

    path = unique_path("film.mp4")
    first, one = upload(cp_api, os.urandom(CHUNK + 1), path=path)
    file_id, old = first["file_id"], first["version"]
    before = int(time.time())
    second, two = upload(cp_api, os.urandom(100), path=path)
    after = int(time.time())
    _settled(machines, file_id, _seq(cp_stack, file_id))
    assert len(_tree(cp_stack, path)) == 1  # the old version's key is gone at once
    # A stream that began on the old version keeps reading it: bytes and manifest stay.
    for key in (one.json_body["key"], version_manifest_key(file_id, old)):
        assert _exists(cp_stack, key), key
    assert file_id not in prune.run(before + grace - 1)["collections"]
    assert file_id in prune.run(after + grace + 1)["collections"]
    status = machines.wait(_execution(machines.gc, f"gc-{file_id}-{old}"))
    assert status["status"] == "SUCCEEDED", status
    assert not _exists(cp_stack, one.json_body["key"])
    assert not _exists(cp_stack, version_manifest_key(file_id, old))
    # The current version is untouched.
    for key in (
        two.json_body["key"],
        version_manifest_key(file_id, second["version"]),
        head_key(file_id),
    ):
        assert _exists(cp_stack, key), key
    assert cp_api.call("GET", f"/files/{file_id}").json_body["version"] == second["version"]


def test_a_deleted_file_stops_at_once_and_is_collected_after_the_grace_period(
    cp_api: Any, cp_stack: Any, machines: Any, grace: int
) -> None:
    from chalicelib import prune

    path = unique_path("gone.mp4")
    started, done = upload(cp_api, os.urandom(100), path=path)
    file_id, version = started["file_id"], started["version"]
    before = int(time.time())
    assert cp_api.call("DELETE", f"/files/{file_id}").status_code == 202
    after = int(time.time())

    def published_head() -> dict[str, Any]:
        body = boto3.client("s3").get_object(
            Bucket=cp_stack.env["FSNODE_BUCKET"], Key=head_key(file_id)
        )["Body"]
        return dict(json.loads(body.read()))

    # The DELETE writes the deleted head itself. The upload's own publish run may have
    # read the record just before and write its older head just after; that run then
    # finds the record changed and publishes again, so the head says deleted within it.
    head = wait_for(
        lambda: (h := published_head())["status"] == "deleted" and h, "the deleted head", 30
    )
    assert head["version"] is None
    _settled(machines, file_id, head["seq"])
    assert _tree(cp_stack, path) == []
    assert _exists(cp_stack, done.json_body["key"])  # readable through the grace period
    assert file_id not in prune.run(before + grace - 1)["collections"]
    assert file_id in prune.run(after + grace + 1)["collections"]
    status = machines.wait(_execution(machines.gc, f"gc-{file_id}-{version}"))
    assert status["status"] == "SUCCEEDED", status
    for key in (done.json_body["key"], version_manifest_key(file_id, version), head_key(file_id)):
        assert not _exists(cp_stack, key), key
    assert cp_api.call("GET", f"/files/{file_id}").status_code == 404


def test_an_import_is_hashed_by_its_job(cp_api: Any, cp_stack: Any, machines: Any) -> None:
    data = os.urandom(2 * CHUNK + 5)
    key, _ = put_import_object(cp_stack, data)
    record = cp_api.call(
        "POST",
        "/files/import",
        {"bucket": cp_stack.env["FSNODE_BUCKET"], "key": key, "path": unique_path("in.mp4")},
    ).json_body
    name = f"hash-{record['file_id']}-{record['version']}"
    status = machines.wait(_execution(machines.arns["hash_chunks"], name))
    assert status["status"] == "SUCCEEDED", status
    assert json.loads(status["output"])["outcome"] == "hashed"
    manifest = read_manifest(cp_stack.env["FSNODE_BUCKET"], record["file_id"], record["version"])
    assert manifest.chunk_hashes() == chunk_hashes(data)


def test_rehash_repairs_recorded_hashes_that_differ(
    cp_api: Any, cp_stack: Any, machines: Any, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(2 * CHUNK + 5)
    lying = chunk_hashes(data)
    lying[1] = hashlib.sha256(b"not the bytes").hexdigest()  # a client declared wrongly
    body = {
        "path": unique_path("lie.bin"),
        "size": len(data),
        "chunk_sha256": lying,
        "part_sha256": part_hashes(data),
    }
    started = cp_api.call("POST", "/files", body).json_body
    (part,) = started["parts"]
    import requests

    etag = requests.put(part["url"], data=data, headers=part["headers"], timeout=30).headers["ETag"]
    assert (
        cp_api.call(
            "POST",
            f"/files/{started['file_id']}/complete",
            {"parts": [{"part_number": 1, "etag": etag}]},
        ).status_code
        == 200
    )
    answer = cp_api.call("POST", f"/files/{started['file_id']}/rehash")
    assert answer.status_code == 202, answer.body
    assert answer.json_body["version"] == started["version"]
    status = machines.wait(answer.json_body["execution"])
    assert status["status"] == "SUCCEEDED", status
    output = json.loads(status["output"])
    assert (output["outcome"], output["changed"]) == ("repaired", 1)
    plan = cp_api.call("GET", f"/files/{started['file_id']}/plan").json_body
    assert [c["sha256"] for c in plan["chunks"]] == chunk_hashes(data)
    assert (
        cp_api.call("GET", f"/files/{started['file_id']}").json_body["chunks_sha256"]
        == hashlib.sha256(b"".join(bytes.fromhex(h) for h in chunk_hashes(data))).hexdigest()
    )
    assert cp_api.call("DELETE", f"/files/{started['file_id']}").status_code == 202
    assert cp_api.call("POST", f"/files/{started['file_id']}/rehash").status_code == 410
