"""Large uploads: no item grows with the file (declared hashes live in S3), part URLs
come in pages, init, ``complete`` and plans take a fixed number of DynamoDB requests
whatever the chunk count (50,000 chunks shown with 1 KiB chunks), and every way an
upload ends (refused, replaced, abandoned, failed half way) leaves nothing behind once
its collection entry has run."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import boto3
import pytest
import requests
from fsnode_core.chunks import chunk_count, part_layout
from fsnode_core.errors import Unavailable
from fsnode_core.models import file_pk
from fsnode_core.published_keys import version_manifest_key

from tests.helpers import put_parts
from tests.integration.control_plane_helpers import (
    CHUNK,
    assert_nothing_visible,
    error_of,
    file_items,
    init_body,
    scheduled_prune,
    unique_path,
    upload,
)

WEEK = 7 * 24 * 3600
SMALL_CHUNK = 1024  # 50,000 chunks in 49 MiB: the counts are what AWS limits


def _sks(stack: Any, file_id: str) -> list[str]:
    return sorted(item["sk"]["S"] for item in file_items(stack, file_id))


def _set_upload(stack: Any, file_id: str, **values: dict[str, str]) -> None:
    """Set attributes of a file's upload item (typed values, as DynamoDB takes them)."""
    boto3.client("dynamodb").update_item(
        TableName=stack.env["FSNODE_CHUNKS_TABLE"],
        Key={"pk": {"S": file_pk(file_id)}, "sk": {"S": "upload"}},
        UpdateExpression="SET " + ", ".join(f"#{name} = :{name}" for name in values),
        ExpressionAttributeNames={f"#{name}": name for name in values},
        ExpressionAttributeValues={f":{name}": value for name, value in values.items()},
    )


def _declared(size: int, chunk: int) -> dict[str, Any]:
    """An init body for ``size`` bytes of made-up content (never uploaded)."""
    return {
        "path": unique_path("big.mp4"),
        "size": size,
        "content_type": "video/mp4",
        "chunk_sha256": [os.urandom(32).hex() for _ in range(chunk_count(size, chunk))],
        "part_sha256": [os.urandom(32).hex() for _ in part_layout(size, chunk)],
    }


@pytest.fixture()
def small_chunks(cp_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The control plane at 1 KiB chunks for this test."""
    from chalicelib import aws

    monkeypatch.setenv("FSNODE_CHUNK_SIZE", str(SMALL_CHUNK))
    # Every plan reads the node list, so the counted requests do not depend on what an
    # earlier test left in the placement cache.
    monkeypatch.setenv("FSNODE_PLACEMENT_CACHE_SECONDS", "0")
    aws.reset()
    yield SMALL_CHUNK
    aws.reset()


def _count_dynamodb(calls: list[str]) -> Callable[[], None]:
    from chalicelib import aws

    client = aws.client("dynamodb")

    def hook(request: Any, **_: Any) -> None:
        calls.append(str(request.headers.get("X-Amz-Target", b"")).rsplit(".", 1)[-1].strip("'"))

    client.meta.events.register("before-send.dynamodb.*", hook)
    return lambda: client.meta.events.unregister("before-send.dynamodb.*", hook)


def _counted(call: Callable[[], Any]) -> tuple[Any, list[str]]:
    sent: list[str] = []
    stop = _count_dynamodb(sent)
    try:
        return call(), sent
    finally:
        stop()


def test_50000_chunks_upload_and_plan_in_a_fixed_number_of_requests(
    cp_api: Any, cp_stack: Any, small_chunks: int
) -> None:
    """The file AWS's limits would have stopped: init's body, complete's requests and the
    plan's answer do not grow with the chunk count (a 3-chunk file next to it)."""
    shapes: dict[int, dict[str, Any]] = {}
    for chunks in (3, 50_000):
        data = b"\x01" * (chunks * small_chunks - 7)
        hashes = [
            hashlib.sha256(data[i : i + small_chunks]).hexdigest()
            for i in range(0, len(data), small_chunks)
        ]
        layout = part_layout(len(data), small_chunks)
        body = {
            "path": unique_path("big.bin"),
            "size": len(data),
            "chunk_sha256": hashes,
            "part_sha256": [
                hashlib.sha256(data[p.offset : p.offset + p.length]).hexdigest() for p in layout
            ],
        }
        raw = json.dumps(body).encode()
        assert len(raw) < 4 * 1024 * 1024  # under the route's body limit
        init, init_calls = _counted(partial(cp_api.call, "POST", "/files", raw))
        assert init.status_code == 200, init.body[:300]
        started = init.json_body
        file_id = started["file_id"]
        # One small item; the hashes are in the declaration object in S3.
        assert _sks(cp_stack, file_id) == ["upload"]
        assert max(len(json.dumps(i)) for i in file_items(cp_stack, file_id)) < 2000
        etags = put_parts(started["parts"], data)
        done, complete_calls = _counted(
            partial(cp_api.call, "POST", f"/files/{file_id}/complete", {"parts": etags})
        )
        assert done.status_code == 200, done.body[:300]
        assert _sks(cp_stack, file_id) == ["meta"]
        pages, plan_calls, sizes = [], [], []
        offset: int | None = 0
        while offset is not None:
            page, calls = _counted(
                partial(cp_api.call, "GET", f"/files/{file_id}/plan?offset={offset}")
            )
            assert page.status_code == 200, page.body[:300]
            sizes.append(len(page.body))
            plan_calls.append(calls)
            pages.append(page.json_body)
            offset = page.json_body["next_offset"]
        planned = [c["sha256"] for page in pages for c in page["chunks"]]
        assert planned == hashes
        assert len(pages) == -(-chunks // 10_000)
        # Compact: one S3 URL per page, edges by index; far below Lambda's 6 MB answer.
        assert max(sizes) < 2 * 1024 * 1024
        assert all(
            isinstance(i, int) for page in pages for c in page["chunks"] for i in c["replicas"]
        )
        shapes[chunks] = {"init": init_calls, "complete": complete_calls, "plan": plan_calls[0]}
    assert shapes[50_000] == shapes[3], shapes
    assert shapes[3]["complete"] == ["GetItem", "GetItem", "TransactWriteItems"]
    assert len(shapes[3]["init"]) <= 6 and len(shapes[3]["plan"]) <= 4, shapes


def test_declared_hashes_are_one_object_in_s3(cp_api: Any, cp_stack: Any) -> None:
    from chalicelib import uploads

    for size in (300 * CHUNK, 3000 * CHUNK + 7):
        body = _declared(size, CHUNK)
        started = cp_api.call("POST", "/files", body).json_body
        file_id, version = started["file_id"], started["version"]
        assert _sks(cp_stack, file_id) == ["upload"]
        upload_item = file_items(cp_stack, file_id)[0]
        assert len(json.dumps(upload_item)) < 2000
        assert "expires_at" not in upload_item  # not the TTL: the sweep discards it
        declared = json.loads(
            boto3.client("s3")
            .get_object(
                Bucket=cp_stack.env["FSNODE_BUCKET"], Key=version_manifest_key(file_id, version)
            )["Body"]
            .read()
        )
        assert declared["declared"] is True
        assert declared["chunk_sha256"] == "".join(body["chunk_sha256"])
        assert declared["part_sha256"] == "".join(body["part_sha256"])
        # Any page, signed for the declared digests.
        page = cp_api.call("GET", f"/files/{file_id}/parts?first=45&limit=10").json_body
        assert [p["sha256"] for p in page["parts"]] == body["part_sha256"][44:54]
        parts = len(body["part_sha256"])
        assert started["part_count"] == parts and started["next_part"] == (
            None if parts <= uploads.PARTS_PAGE else uploads.PARTS_PAGE + 1
        )
        assert file_id in uploads.sweep_abandoned(int(time.time()) + WEEK + 60)
        assert_nothing_visible(cp_api, cp_stack, {**started, "path": body["path"]})


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("first=0", 400),
        ("first=x", 400),
        ("limit=0", 400),
        ("limit=501", 400),
        ("first=3", 400),  # past the last part
    ],
)
def test_part_pages_refuse_bad_queries(cp_api: Any, query: str, status: int) -> None:
    data = os.urandom(6 * CHUNK)  # two parts
    started = cp_api.call("POST", "/files", init_body(data)).json_body
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
    cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import uploads

    monkeypatch.setattr(uploads, "PARTS_PAGE", 2)
    data = os.urandom(2 * 5 * CHUNK + 123)  # three parts: two pages of two
    body = init_body(data, path=unique_path("paged.mp4"))
    started = cp_api.call("POST", "/files", body).json_body
    listed = list(started["parts"])
    assert [p["part_number"] for p in listed] == [1, 2] and started["next_part"] == 3
    page = cp_api.call("GET", f"/files/{started['file_id']}/parts?first=3").json_body
    assert page["next_part"] is None
    listed += page["parts"]
    etags = put_parts(listed, data)
    done = cp_api.call("POST", f"/files/{started['file_id']}/complete", {"parts": etags})
    assert done.status_code == 200, done.body
    # Published: the meta item alone (its hashes are in the version manifest).
    assert _sks(cp_stack, started["file_id"]) == ["meta"]
    obj = boto3.client("s3").get_object(Bucket=done.json_body["bucket"], Key=done.json_body["key"])
    assert obj["Body"].read() == data


def test_a_stale_overwrite_is_replaced_and_its_items_removed(cp_api: Any, cp_stack: Any) -> None:
    first, done = upload(cp_api, os.urandom(CHUNK + 5))
    file_id = first["file_id"]
    current = done.json_body
    body = init_body(os.urandom(2 * CHUNK), file_id=file_id)
    stale = cp_api.call("POST", "/files", body).json_body
    assert _sks(cp_stack, file_id) == ["meta", "upload"]
    # While its part URLs live, another upload of the file is refused (and leaves no
    # S3 upload of its own behind).
    busy = cp_api.call("POST", "/files", body)
    assert busy.status_code == 409, busy.body
    s3 = boto3.client("s3")
    bucket = cp_stack.env["FSNODE_BUCKET"]
    open_uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=f"files/{file_id}/")
    assert [u["UploadId"] for u in open_uploads.get("Uploads", [])] == [stale["upload_id"]]
    # Its URLs expire (made so here: an hour is long for a test).
    _set_upload(cp_stack, file_id, urls_until={"N": str(int(time.time()) - 1)})
    fresh = cp_api.call("POST", "/files", body)
    assert fresh.status_code == 200, fresh.body
    # The stale one is retired (its declaration collected with it), the fresh one open.
    assert _sks(cp_stack, file_id) == ["meta", f"retired#{stale['version']}", "upload"]
    assert file_items(cp_stack, file_id)[2]["version"]["S"] == fresh.json_body["version"]
    with pytest.raises(s3.exceptions.ClientError):
        s3.list_parts(
            Bucket=bucket, Key=f"files/{file_id}/{stale['version']}", UploadId=stale["upload_id"]
        )
    assert cp_api.call("GET", f"/files/{file_id}").json_body == current  # still serving


def test_an_init_that_fails_half_way_leaves_nothing(
    cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import manifests

    written: list[Any] = []
    real = manifests.put_declaration

    def fail(declaration: Any) -> None:
        written.append(declaration)
        raise Unavailable("could not write a manifest to the origin bucket")

    monkeypatch.setattr(manifests, "put_declaration", fail)
    body = init_body(os.urandom(CHUNK + 1))
    answer = cp_api.call("POST", "/files", body)
    assert answer.status_code == 503, answer.body
    monkeypatch.setattr(manifests, "put_declaration", real)
    (declaration,) = written
    bucket = cp_stack.env["FSNODE_BUCKET"]
    listed = boto3.client("s3").list_multipart_uploads(
        Bucket=bucket, Prefix=f"files/{declaration.file_id}/"
    )
    assert listed.get("Uploads", []) == []
    assert_nothing_visible(
        cp_api,
        cp_stack,
        {
            "file_id": declaration.file_id,
            "version": declaration.version,
            "path": body["path"],
            "upload_id": "never-listed",
        },
    )


def test_an_upload_being_declared_or_discarded_cannot_complete(cp_api: Any, cp_stack: Any) -> None:
    data = os.urandom(100)
    started = cp_api.call("POST", "/files", init_body(data)).json_body
    (part,) = started["parts"]
    etag = requests.put(part["url"], data=data, headers=part["headers"], timeout=30).headers["ETag"]
    for state in ("declaring", "discarding"):
        _set_upload(cp_stack, started["file_id"], state={"S": state})
        answer = cp_api.call(
            "POST",
            f"/files/{started['file_id']}/complete",
            {"parts": [{"part_number": 1, "etag": etag}]},
        )
        assert answer.status_code == 409, answer.body
        assert cp_api.call("GET", f"/files/{started['file_id']}/parts").status_code == 409
    # A discard that stopped half way is finished by the sweep.
    from chalicelib import uploads

    assert started["file_id"] in uploads.sweep_abandoned(int(time.time()) + WEEK + 1)
    assert_nothing_visible(cp_api, cp_stack, started)


def test_prune_discards_abandoned_uploads(cp_api: Any, cp_app: Any, cp_stack: Any) -> None:
    started = cp_api.call("POST", "/files", init_body(os.urandom(CHUNK + 1))).json_body
    # (That an upload within its week is kept is the sweep's own test, above: one
    # prune run here, since each one sweeps everything the shared stack holds.)
    # A week on (made so: the upload's deadline, as the sweep's index sorts it, passed).
    _set_upload(
        cp_stack,
        started["file_id"],
        upload_expires_at={"N": "1"},
        collect_sk={"S": f"{1:012d}#{started['file_id']}"},
    )
    summary = scheduled_prune(cp_app)
    assert started["file_id"] in summary["uploads_discarded"]
    assert_nothing_visible(cp_api, cp_stack, started)
    done = cp_api.call(
        "POST",
        f"/files/{started['file_id']}/complete",
        {"parts": [{"part_number": 1, "etag": '"x"'}]},
    )
    assert done.status_code == 404


def test_init_takes_a_body_up_to_4_mib_and_other_routes_1_mib(cp_api: Any) -> None:
    padding = "x" * (2 * 1024 * 1024)
    body = init_body(os.urandom(10), padding=padding)
    assert cp_api.call("POST", "/files", body).status_code == 200
    huge = cp_api.call("POST", "/files", {**body, "padding": "x" * (4 * 1024 * 1024)})
    assert huge.status_code == 413 and error_of(huge)["code"] == "payload_too_large"
    other = cp_api.call("POST", f"/files/{'e' * 32}/complete", {"parts": [], "padding": padding})
    assert other.status_code == 413


def test_an_uploader_cancels_its_own_upload(cp_api: Any, cp_stack: Any) -> None:
    path = unique_path()
    body = init_body(os.urandom(10), path=path)
    del body["content_type"]  # none declared: the control plane's default
    started = cp_api.call("POST", "/files", body).json_body
    route = f"/files/{started['file_id']}/upload"
    assert cp_api.call("POST", "/files", body).status_code == 409  # one upload per file
    assert cp_api.call("DELETE", f"{route}?upload_id=other").status_code == 409
    assert cp_api.call("DELETE", route).status_code == 400  # upload_id is required
    assert cp_api.call("DELETE", f"{route}?upload_id=x", key=False).status_code == 401
    answer = cp_api.call("DELETE", f"{route}?upload_id={started['upload_id']}")
    assert answer.status_code == 200, answer.body
    assert answer.json_body["status"] == "cancelled"
    assert_nothing_visible(cp_api, cp_stack, {**started, "path": path})
    assert cp_api.call("DELETE", f"{route}?upload_id={started['upload_id']}").status_code == 404
    assert cp_api.call("POST", "/files", body).status_code == 200  # the path is free again
