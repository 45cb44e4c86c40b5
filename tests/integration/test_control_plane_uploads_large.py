"""Large uploads: no item grows with the file, part URLs come in pages, ``complete`` is
bounded in DynamoDB requests, and every way an upload ends (refused, replaced, abandoned,
failed half way) leaves none of its items behind."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from fsnode_core.catalog import PART_BATCH, ChunkCatalog
from fsnode_core.chunks import chunk_count, part_layout
from fsnode_core.errors import Unavailable
from fsnode_core.ids import new_id
from fsnode_core.models import ChunkRecord, PendingUpload, file_pk
from test_control_plane_files import CHUNK, chunk_hashes, part_hashes, upload
from test_control_plane_files_checksums import assert_nothing_visible
from test_control_plane_nodes import error_of

GIB = 1024**3
WEEK = 7 * 24 * 3600
# The 100 GiB declaration writes 25,600 chunk items to moto (about a minute here): run it
# with FSNODE_LARGE_UPLOAD_TEST=1. The default run shows the same layout at small sizes.
LARGE = pytest.mark.skipif(not os.environ.get("FSNODE_LARGE_UPLOAD_TEST"),
                           reason="a minute of writes to moto: FSNODE_LARGE_UPLOAD_TEST=1")


def _items(stack: Any, file_id: str) -> list[dict[str, Any]]:
    pages = boto3.client("dynamodb").get_paginator("query").paginate(
        TableName=stack.env["FSNODE_CHUNKS_TABLE"], KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": file_pk(file_id)}})
    return [item for page in pages for item in page["Items"]]


def _kinds(items: list[dict[str, Any]], version: str) -> dict[str, int]:
    """How many items of each kind the partition holds for ``version``."""
    out = {"upload": 0, "parts": 0, "chunks": 0}
    for item in items:
        sk = item["sk"]["S"]
        if sk == "upload" and item["version"]["S"] == version:
            out["upload"] += 1
        elif sk.startswith(f"upload#{version}#parts#"):
            out["parts"] += 1
        elif sk.startswith(f"chunk#{version}#"):
            out["chunks"] += 1
    return out


def _declared(size: int, chunk: int) -> dict[str, Any]:
    """An init body for ``size`` bytes of made-up content (never uploaded)."""
    return {"name": "big.mp4", "size": size, "content_type": "video/mp4",
            "chunk_sha256": [os.urandom(32).hex() for _ in range(chunk_count(size, chunk))],
            "part_sha256": [os.urandom(32).hex() for _ in part_layout(size, chunk)]}


@pytest.fixture()
def chunk_4mib(cp_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The control plane at its default chunk size (4 MiB) for this test."""
    from chalicelib import aws

    monkeypatch.setenv("FSNODE_CHUNK_SIZE", str(4 * 1024 * 1024))
    aws.reset()
    yield 4 * 1024 * 1024
    aws.reset()


@LARGE
def test_a_100_gib_upload_is_declared_in_small_items_and_paged_urls(
        cp_api: Any, cp_stack: Any, chunk_4mib: int) -> None:
    """Before: past ~16 GiB the upload item passed DynamoDB's 400 KB (400 "refused by
    the store"), past ~41 GiB the body passed 1 MiB (413), past ~78 GiB S3's 10,000 parts."""
    from chalicelib import uploads

    size = 100 * GIB
    body = _declared(size, chunk_4mib)
    raw = json.dumps(body).encode()
    assert len(raw) > 2 * 1024 * 1024  # over the old 1 MiB limit, under the route's 4 MiB
    before = int(time.time())
    answer = cp_api.call("POST", "/files", raw)
    assert answer.status_code == 200, answer.body[:500]
    started = answer.json_body
    file_id, version = started["file_id"], started["version"]
    parts = len(body["part_sha256"])
    assert (started["part_count"], started["part_size"]) == (parts, 12 * 1024 * 1024) == (
        8534, 12 * 1024 * 1024)  # parts grew from 8 MiB to stay within 10,000
    assert len(started["parts"]) == uploads.PARTS_PAGE
    assert started["next_part"] == uploads.PARTS_PAGE + 1

    items = _items(cp_stack, file_id)
    assert _kinds(items, version) == {"upload": 1, "parts": -(-parts // PART_BATCH),
                                      "chunks": 25600}
    upload_item = next(i for i in items if i["sk"]["S"] == "upload")
    assert len(json.dumps(upload_item)) < 2000  # small whatever the file's size
    assert "expires_at" not in upload_item  # not the TTL: the sweep discards it
    assert max(len(json.dumps(i)) for i in items) < 100_000

    # Any page, freshly signed for the declared digests.
    page = cp_api.call("GET", f"/files/{file_id}/parts?first=8001").json_body
    assert [p["part_number"] for p in page["parts"]] == list(range(8001, 8501))
    assert [p["sha256"] for p in page["parts"]] == body["part_sha256"][8000:8500]
    assert page["next_part"] == 8501 and page["upload_id"] == started["upload_id"]
    last = cp_api.call("GET", f"/files/{file_id}/parts?first=8501&limit=100").json_body
    assert len(last["parts"]) == 34 and last["next_part"] is None
    assert last["parts"][-1]["offset"] + last["parts"][-1]["length"] == size

    # Nobody completes it: the sweep discards it whole once its week is up.
    assert file_id not in uploads.sweep_abandoned(before + WEEK - 1)
    assert file_id in uploads.sweep_abandoned(int(time.time()) + WEEK + 60)
    assert _items(cp_stack, file_id) == []
    assert cp_api.call("GET", f"/files/{file_id}/parts").status_code == 404


def test_declared_hashes_live_in_items_that_do_not_grow_with_the_file(
        cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import uploads
    from fsnode_core import catalog

    monkeypatch.setattr(catalog, "PART_BATCH", 50)  # several batches at a test's size
    largest = []
    for size in (300 * CHUNK, 3000 * CHUNK + 7):
        body = _declared(size, CHUNK)
        started = cp_api.call("POST", "/files", body).json_body
        file_id, version = started["file_id"], started["version"]
        parts = len(body["part_sha256"])
        items = _items(cp_stack, file_id)
        assert _kinds(items, version) == {"upload": 1, "parts": -(-parts // 50),
                                          "chunks": chunk_count(size, CHUNK)}
        upload_item = next(i for i in items if i["sk"]["S"] == "upload")
        assert len(json.dumps(upload_item)) < 2000
        assert "expires_at" not in upload_item  # not the TTL: the sweep discards it
        largest.append(max(len(json.dumps(i)) for i in items))
        # A page across a batch boundary, signed for the declared digests.
        page = cp_api.call("GET", f"/files/{file_id}/parts?first=45&limit=10").json_body
        assert [p["sha256"] for p in page["parts"]] == body["part_sha256"][44:54]
        assert started["part_count"] == parts and started["next_part"] == (
            None if parts <= uploads.PARTS_PAGE else uploads.PARTS_PAGE + 1)
        assert file_id in uploads.sweep_abandoned(int(time.time()) + WEEK + 60)
        assert _items(cp_stack, file_id) == []
    assert largest[1] == largest[0]  # ten times the file, the same largest item


@pytest.mark.parametrize(("query", "status"), [
    ("first=0", 400), ("first=x", 400), ("limit=0", 400), ("limit=501", 400),
    ("first=3", 400),  # past the last part
])
def test_part_pages_refuse_bad_queries(cp_api: Any, query: str, status: int) -> None:
    data = os.urandom(6 * CHUNK)  # two parts
    body = {"name": "x", "size": len(data), "content_type": "video/mp4",
            "chunk_sha256": chunk_hashes(data), "part_sha256": part_hashes(data)}
    started = cp_api.call("POST", "/files", body).json_body
    answer = cp_api.call("GET", f"/files/{started['file_id']}/parts?{query}")
    assert answer.status_code == status, answer.body
    error_of(answer)


def test_part_pages_need_the_key_and_an_upload_in_flight(cp_api: Any) -> None:
    started, done = upload(cp_api, os.urandom(100))
    assert done.status_code == 200
    path = f"/files/{started['file_id']}/parts"
    assert cp_api.call("GET", path, key=False).status_code == 401
    assert cp_api.call("GET", path).status_code == 404  # completed: nothing in flight
    assert cp_api.call("GET", f"/files/{'d' * 32}/parts").status_code == 404
    assert cp_api.call("GET", "/files/..%2Fx/parts").status_code == 400


def test_an_upload_sent_through_several_pages_completes(
        cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import uploads

    monkeypatch.setattr(uploads, "PARTS_PAGE", 2)
    data = os.urandom(2 * 5 * CHUNK + 123)  # three parts: two pages of two
    body = {"name": "paged.mp4", "size": len(data), "content_type": "video/mp4",
            "chunk_sha256": chunk_hashes(data), "part_sha256": part_hashes(data)}
    started = cp_api.call("POST", "/files", body).json_body
    listed = list(started["parts"])
    assert [p["part_number"] for p in listed] == [1, 2] and started["next_part"] == 3
    page = cp_api.call("GET", f"/files/{started['file_id']}/parts?first=3").json_body
    assert page["next_part"] is None
    listed += page["parts"]
    etags = []
    for part in listed:
        put = requests.put(part["url"], data=data[part["offset"]:part["offset"] + part["length"]],
                           headers=part["headers"], timeout=30)
        assert put.status_code == 200, put.text
        etags.append({"part_number": part["part_number"], "etag": put.headers["ETag"]})
    done = cp_api.call("POST", f"/files/{started['file_id']}/complete", {"parts": etags})
    assert done.status_code == 200, done.body
    items = _items(cp_stack, started["file_id"])
    # Published: meta and the chunks; the upload and its part batches are gone.
    assert _kinds(items, started["version"]) == {"upload": 0, "parts": 0,
                                                 "chunks": chunk_count(len(data), CHUNK)}
    obj = boto3.client("s3").get_object(Bucket=done.json_body["bucket"],
                                        Key=done.json_body["key"])
    assert obj["Body"].read() == data


def _count_dynamodb(calls: list[str]) -> Any:
    from chalicelib import aws

    client = aws.client("dynamodb")

    def hook(request: Any, **_: Any) -> None:
        calls.append(str(request.headers.get("X-Amz-Target", b"")))

    client.meta.events.register("before-send.dynamodb.*", hook)
    return lambda: client.meta.events.unregister("before-send.dynamodb.*", hook)


@pytest.mark.parametrize("overwrite", [False, True], ids=["new file", "new version"])
def test_complete_takes_a_fixed_number_of_dynamodb_requests(
        cp_api: Any, cp_env: Any, monkeypatch: pytest.MonkeyPatch, overwrite: bool) -> None:
    """3 chunks or 2560: the same requests (chunk items were written at init)."""
    from chalicelib import aws

    monkeypatch.setenv("FSNODE_CHUNK_SIZE", "2048")  # a 5 MiB part holds 2560 chunks
    aws.reset()
    counts = []
    for size in (3 * 2048, 5 * 1024 * 1024):
        data = os.urandom(size)
        file_id = None
        if overwrite:
            first, done = upload(cp_api, os.urandom(100), name="v1.mp4")
            assert done.status_code == 200
            file_id = first["file_id"]
        hashes = [hashlib.sha256(data[i:i + 2048]).hexdigest() for i in range(0, size, 2048)]
        body = {"name": "many.mp4", "size": size, "content_type": "video/mp4",
                "chunk_sha256": hashes,
                "part_sha256": [hashlib.sha256(data).hexdigest()],
                **({"file_id": file_id} if file_id else {})}
        started = cp_api.call("POST", "/files", body).json_body
        (part,) = started["parts"]
        etag = requests.put(part["url"], data=data, headers=part["headers"],
                            timeout=60).headers["ETag"]
        sent: list[str] = []
        stop = _count_dynamodb(sent)
        try:
            done = cp_api.call("POST", f"/files/{started['file_id']}/complete",
                               {"parts": [{"part_number": 1, "etag": etag}]})
        finally:
            stop()
        assert done.status_code == 200, done.body
        # The upload and its part hashes, the file, the publishing transaction, and one
        # batch deleting the part hashes: no chunk item is written or read here.
        assert [t.rsplit(".", 1)[-1].strip("'") for t in sent] == [
            "Query", "GetItem", "TransactWriteItems", "BatchWriteItem"], sent
        counts.append(len(sent))
        plan = cp_api.call("GET", f"/files/{started['file_id']}/plan").json_body
        assert [c["sha256"] for c in plan["chunks"]] == hashes
    assert counts[1] == counts[0] and counts[1] <= 5, counts


def test_a_stale_overwrite_is_replaced_and_its_items_removed(cp_api: Any,
                                                            cp_stack: Any) -> None:
    first, done = upload(cp_api, os.urandom(CHUNK + 5))
    file_id = first["file_id"]
    current = done.json_body
    data = os.urandom(2 * CHUNK)
    body = {"name": "v2.mp4", "size": len(data), "content_type": "video/mp4",
            "chunk_sha256": chunk_hashes(data), "part_sha256": part_hashes(data),
            "file_id": file_id}
    stale = cp_api.call("POST", "/files", body).json_body
    assert _kinds(_items(cp_stack, file_id), stale["version"])["chunks"] == 2
    # While its part URLs live, another upload of the file is refused (and leaves no
    # S3 upload of its own behind).
    busy = cp_api.call("POST", "/files", body)
    assert busy.status_code == 409, busy.body
    s3 = boto3.client("s3")
    bucket = cp_stack.env["FSNODE_BUCKET"]
    open_uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=f"files/{file_id}/")
    assert [u["UploadId"] for u in open_uploads.get("Uploads", [])] == [stale["upload_id"]]
    # Its URLs expire (made so here: an hour is long for a test).
    boto3.client("dynamodb").update_item(
        TableName=cp_stack.env["FSNODE_CHUNKS_TABLE"],
        Key={"pk": {"S": file_pk(file_id)}, "sk": {"S": "upload"}},
        UpdateExpression="SET urls_until = :t",
        ExpressionAttributeValues={":t": {"N": str(int(time.time()) - 1)}})
    fresh = cp_api.call("POST", "/files", body)
    assert fresh.status_code == 200, fresh.body
    items = _items(cp_stack, file_id)
    assert _kinds(items, stale["version"]) == {"upload": 0, "parts": 0, "chunks": 0}
    assert _kinds(items, fresh.json_body["version"]) == {"upload": 1, "parts": 1, "chunks": 2}
    with pytest.raises(s3.exceptions.ClientError):
        s3.list_parts(Bucket=bucket, Key=f"files/{file_id}/{stale['version']}",
                      UploadId=stale["upload_id"])
    assert cp_api.call("GET", f"/files/{file_id}").json_body == current  # still serving


def test_an_init_that_fails_half_way_leaves_nothing(
        cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []
    real = ChunkCatalog.declare_upload

    def fail_after_writing(self: ChunkCatalog, upload: PendingUpload, chunks: Any,
                           digests: Any) -> None:
        self._batch_put([chunk.to_item() for chunk in chunks[:1]])  # some items landed
        written.append(upload.file_id)
        raise Unavailable("write chunks failed: the table kept throttling")

    monkeypatch.setattr(ChunkCatalog, "declare_upload", fail_after_writing)
    data = os.urandom(CHUNK + 1)
    body = {"name": "x", "size": len(data), "content_type": "video/mp4",
            "chunk_sha256": chunk_hashes(data), "part_sha256": part_hashes(data)}
    answer = cp_api.call("POST", "/files", body)
    assert answer.status_code == 503, answer.body
    monkeypatch.setattr(ChunkCatalog, "declare_upload", real)
    (file_id,) = written
    assert _items(cp_stack, file_id) == []
    bucket = cp_stack.env["FSNODE_BUCKET"]
    listed = boto3.client("s3").list_multipart_uploads(Bucket=bucket,
                                                       Prefix=f"files/{file_id}/")
    assert listed.get("Uploads", []) == []


def test_an_upload_being_declared_or_discarded_cannot_complete(cp_api: Any,
                                                              cp_stack: Any) -> None:
    data = os.urandom(100)
    body = {"name": "x", "size": len(data), "content_type": "video/mp4",
            "chunk_sha256": chunk_hashes(data), "part_sha256": part_hashes(data)}
    started = cp_api.call("POST", "/files", body).json_body
    (part,) = started["parts"]
    etag = requests.put(part["url"], data=data, headers=part["headers"],
                        timeout=30).headers["ETag"]
    for state in ("declaring", "discarding"):
        boto3.client("dynamodb").update_item(
            TableName=cp_stack.env["FSNODE_CHUNKS_TABLE"],
            Key={"pk": {"S": file_pk(started["file_id"])}, "sk": {"S": "upload"}},
            UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": {"S": state}})
        answer = cp_api.call("POST", f"/files/{started['file_id']}/complete",
                             {"parts": [{"part_number": 1, "etag": etag}]})
        assert answer.status_code == 409, answer.body
        assert cp_api.call("GET", f"/files/{started['file_id']}/parts").status_code == 409
    # A discard that stopped half way is finished by the sweep.
    from chalicelib import uploads

    assert started["file_id"] in uploads.sweep_abandoned(int(time.time()) + WEEK + 1)
    assert_nothing_visible(cp_api, cp_stack, started)


def test_prune_discards_abandoned_uploads(cp_api: Any, cp_app: Any, cp_stack: Any) -> None:
    from fsnode.localstack.lambda_dispatch import LambdaContext

    data = os.urandom(CHUNK + 1)
    body = {"name": "x", "size": len(data), "content_type": "video/mp4",
            "chunk_sha256": chunk_hashes(data), "part_sha256": part_hashes(data)}
    started = cp_api.call("POST", "/files", body).json_body
    event = {"detail-type": "Scheduled Event", "source": "aws.events", "id": "1",
             "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
             "account": "000000000000", "resources": [], "detail": {}, "version": "0"}
    # (That an upload within its week is kept is the sweep's own test, above: one
    # prune run here, since each one sweeps everything the shared stack holds.)
    # A week on (made so: the upload's deadline, as the sweep's index sorts it, passed).
    boto3.client("dynamodb").update_item(
        TableName=cp_stack.env["FSNODE_CHUNKS_TABLE"],
        Key={"pk": {"S": file_pk(started["file_id"])}, "sk": {"S": "upload"}},
        UpdateExpression="SET upload_expires_at = :at, collect_sk = :due",
        ExpressionAttributeValues={":at": {"N": "1"},
                                   ":due": {"S": f"{1:012d}#{started['file_id']}"}})
    summary = cp_app.prune(event, LambdaContext("prune", 512, 60))
    assert started["file_id"] in summary["uploads_discarded"]
    assert_nothing_visible(cp_api, cp_stack, started)
    done = cp_api.call("POST", f"/files/{started['file_id']}/complete",
                       {"parts": [{"part_number": 1, "etag": '"x"'}]})
    assert done.status_code == 404


def test_an_upload_item_written_before_this_layout_still_completes(
        cp_api: Any, cp_stack: Any) -> None:
    """An item with its hashes inline and its deadline as the TTL (in flight at deploy)."""
    data = os.urandom(CHUNK + 9)
    file_id, version = new_id(), new_id()
    bucket, key = cp_stack.env["FSNODE_BUCKET"], f"files/{file_id}/{version}"
    upload_id = boto3.client("s3").create_multipart_upload(
        Bucket=bucket, Key=key, ContentType="video/mp4", ChecksumAlgorithm="SHA256")["UploadId"]
    now = int(time.time())
    legacy = PendingUpload(file_id=file_id, version=version, upload_id=upload_id, name="old",
                           size=len(data), content_type="video/mp4", chunk_size=CHUNK,
                           bucket=bucket, key=key, created_at=now, expires_at=now + WEEK,
                           chunk_sha256=chunk_hashes(data), part_sha256=part_hashes(data))
    item = legacy.to_item()
    for name in ("state", "urls_until", "file_expires_at"):
        item.pop(name, None)
    boto3.client("dynamodb").put_item(TableName=cp_stack.env["FSNODE_CHUNKS_TABLE"], Item=item)
    page = cp_api.call("GET", f"/files/{file_id}/parts").json_body
    (part,) = page["parts"]
    etag = requests.put(part["url"], data=data, headers=part["headers"],
                        timeout=30).headers["ETag"]
    done = cp_api.call("POST", f"/files/{file_id}/complete",
                       {"parts": [{"part_number": 1, "etag": etag}]})
    assert done.status_code == 200, done.body
    plan = cp_api.call("GET", f"/files/{file_id}/plan").json_body
    assert [c["sha256"] for c in plan["chunks"]] == chunk_hashes(data)
    assert [ChunkRecord.from_item(i).index for i in _items(cp_stack, file_id)
            if i["sk"]["S"].startswith("chunk#")] == [0, 1]


def test_init_takes_a_body_up_to_4_mib_and_other_routes_1_mib(cp_api: Any) -> None:
    padding = "x" * (2 * 1024 * 1024)
    data = os.urandom(10)
    body = {"name": "x", "size": len(data), "content_type": "video/mp4",
            "chunk_sha256": chunk_hashes(data), "part_sha256": part_hashes(data),
            "padding": padding}
    assert cp_api.call("POST", "/files", body).status_code == 200
    huge = cp_api.call("POST", "/files", {**body, "padding": "x" * (4 * 1024 * 1024)})
    assert huge.status_code == 413 and error_of(huge)["code"] == "payload_too_large"
    other = cp_api.call("POST", f"/files/{'e' * 32}/complete", {"parts": [], "padding": padding})
    assert other.status_code == 413
