"""Bad input, one table: each request gets the right status, one JSON error, and changes
nothing (the nodes, chunks and idempotency tables and the bucket read the same after).

Other files cover more of the same per route (CSR rules in test_control_plane_nodes,
share tampering in test_control_plane_files); this table is the matrix of issue 9,
with the "nothing changed" check on every row.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import requests

from tests.integration.bad_input_rows import ID_X, ROWS, Row, Seeded
from tests.integration.conftest import Api
from tests.integration.control_plane_helpers import (
    CHUNK,
    error_of,
    file_items,
    init_body,
    live_node,
    upload,
)


@pytest.fixture(scope="module")
def seeded(cp_app: Any, cp_stack: Any) -> Iterator[Seeded]:
    from chalice.test import Client
    from chalicelib import aws

    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**cp_stack.aws_env, **cp_stack.env}.items():
            patch.setenv(name, value)
        aws.reset()
        with Client(cp_app.app) as client:
            api = Api(client, cp_stack.api_key)
            node, other = live_node(api, cp_stack), live_node(api, cp_stack)
            data = os.urandom(CHUNK + 100)
            folder = f"bad-{os.urandom(4).hex()}/media/"
            first, _ = upload(api, data, path=f"{folder}first.bin")
            second, _ = upload(api, os.urandom(10), path=f"{folder}second.bin")
            shared = api.call("POST", f"/files/{first['file_id']}/share", {"ttl_seconds": 600})
            share = dict(parse_qsl(urlsplit(shared.json_body["share_url"]).query))
            folder_share = api.call("POST", "/shares", {"prefix": folder, "ttl_seconds": 600})
            folder_path = urlsplit(folder_share.json_body["share_url"]).path
            # A new version in flight, one part sent: complete rows aim at it.
            pending = api.call(
                "POST", "/files", init_body(data, file_id=first["file_id"])
            ).json_body
            etag = requests.put(
                pending["parts"][0]["url"],
                data=data,
                timeout=30,
                headers=pending["parts"][0]["headers"],
            ).headers["ETag"]
        aws.reset()
    yield Seeded(
        stack=cp_stack,
        node=node,
        other_node=other,
        file=first,
        other_file=second,
        share=share,
        folder=folder_path,
        pending=pending,
        part_etag=etag,
    )


def _snapshot(seeded: Seeded) -> dict[str, Any]:
    """Everything a bad request could change, in a comparable form: the small tables
    whole; of the chunks table (other tests may fill it) the item count and every item
    of the seeded files and of the unknown id the rows name."""
    stack = seeded.stack
    ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    state: dict[str, Any] = {}
    for logical in ("FSNODE_NODES_TABLE", "FSNODE_IDEMPOTENCY_TABLE"):
        items: list[str] = []
        for page in ddb.get_paginator("scan").paginate(TableName=stack.env[logical]):
            items += [json.dumps(item, sort_keys=True) for item in page["Items"]]
        state[logical] = sorted(items)
    chunks = stack.env["FSNODE_CHUNKS_TABLE"]
    # moto counts a table's items on every DescribeTable (AWS only every few hours): a
    # cheap "no item appeared or vanished" where a scan would read thousands of chunks.
    state["chunk_items"] = ddb.describe_table(TableName=chunks)["Table"]["ItemCount"]
    for file_id in (seeded.file["file_id"], seeded.other_file["file_id"], ID_X):
        state[file_id] = [
            json.dumps(item, sort_keys=True)
            for page in ddb.get_paginator("query").paginate(
                TableName=chunks,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"file#{file_id}"}},
            )
            for item in page["Items"]
        ]
    bucket = stack.env["FSNODE_BUCKET"]
    state["objects"] = sorted(
        (o["Key"], o["ETag"]) for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    )
    state["uploads"] = sorted(
        u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    )
    return state


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_bad_input_is_refused_cleanly_and_changes_nothing(
    cp_api: Any, seeded: Seeded, row: Row
) -> None:
    before = _snapshot(seeded)
    answer = cp_api.call(
        row.method, row.path(seeded), row.body(seeded), key=row.key, headers=row.headers(seeded)
    )
    assert answer.status_code == row.status, answer.body
    assert answer.headers["Content-Type"].startswith("application/json")
    error = error_of(answer)
    assert error["code"] == row.code and error["message"], error
    assert _snapshot(seeded) == before


def test_a_complete_with_a_wrong_part_etag_leaves_nothing_visible(
    cp_api: Any, cp_stack: Any
) -> None:
    old = os.urandom(100)
    first, _ = upload(cp_api, old)
    file_id = first["file_id"]
    data = os.urandom(CHUNK + 5)
    init = cp_api.call(
        "POST", "/files", init_body(data, file_id=file_id, content_type="t")
    ).json_body
    put = requests.put(
        init["parts"][0]["url"], data=data, timeout=30, headers=init["parts"][0]["headers"]
    )
    assert put.status_code == 200
    wrong = '"' + hashlib.md5(b"other bytes").hexdigest() + '"'  # an S3 ETag is an MD5
    done = cp_api.call(
        "POST", f"/files/{file_id}/complete", {"parts": [{"part_number": 1, "etag": wrong}]}
    )
    assert done.status_code == 400 and error_of(done)["code"] == "invalid_input", done.body
    record = cp_api.call("GET", f"/files/{file_id}").json_body
    assert record["version"] == first["version"] and record["size"] == len(old)
    s3 = boto3.client("s3")
    bucket = cp_stack.env["FSNODE_BUCKET"]
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"files/{file_id}/").get("Contents", [])
    ]
    assert keys == [record["key"]]
    assert init["upload_id"] not in {
        u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    }
    # Only its collection entry is left, due now.
    assert [
        i["sk"]["S"] for i in file_items(cp_stack, file_id) if init["version"] in json.dumps(i)
    ] == [f"retired#{init['version']}"]
