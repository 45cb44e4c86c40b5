"""Part SHA-256s: presigned PUTs that S3 checks, and ``complete`` checking ListParts.

The moto server here carries ``s3_checksums`` (the conftest installs it, as the local
stack's ``aws_server`` does), so S3's own refusals are real answers over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from fsnode_core.published_keys import version_manifest_key

from tests.integration.control_plane_helpers import (
    CHUNK,
    chunk_hashes,
    error_of,
    part_hashes,
    unique_path,
    upload,
)


def b64(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def start(api: Any, data: bytes, **extra: Any) -> dict[str, Any]:
    target = {} if "file_id" in extra else {"path": unique_path("clip.mp4")}
    body = {
        **target,
        "size": len(data),
        "content_type": "video/mp4",
        "chunk_sha256": chunk_hashes(data),
        "part_sha256": part_hashes(data),
        **extra,
    }
    init = api.call("POST", "/files", body)
    assert init.status_code == 200, init.body
    return dict(init.json_body)


def put(part: dict[str, Any], data: bytes, headers: dict[str, str] | None = None) -> Any:
    body = data[part["offset"] : part["offset"] + part["length"]]
    sent = part["headers"] if headers is None else headers
    return requests.put(part["url"], data=body, headers=sent, timeout=30)


def complete(api: Any, started: dict[str, Any], etags: list[str]) -> Any:
    parts = [{"part_number": n, "etag": etag} for n, etag in enumerate(etags, start=1)]
    return api.call("POST", f"/files/{started['file_id']}/complete", {"parts": parts})


def collect_version(file_id: str, version: str) -> None:
    """What the ``gc`` execution prune starts for a due entry does, for a version no edge
    holds: its steps in order, in-process."""
    from chalicelib import gc

    state = gc.step({"action": "tombstone", "file_id": file_id, "version": version})
    data = gc.step({**state, "action": "delete_data"})
    gc.step({**state, "action": "delete_items", "evicted": [], "data": data})


def _items(stack: Any, file_id: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").query(
        TableName=stack.env["FSNODE_CHUNKS_TABLE"],
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": f"file#{file_id}"}},
    )["Items"]


def assert_nothing_visible(api: Any, stack: Any, started: dict[str, Any]) -> None:
    """No record, no listing, no open multipart upload, the path free again; what the
    upload left (its declaration, any object) is due for collection at once, and once
    collected nothing of it is left."""
    file_id = started["file_id"]
    assert api.call("GET", f"/files/{file_id}").status_code == 404
    listed = api.call("GET", "/files?limit=1000").json_body
    assert file_id not in {f["file_id"] for f in listed["files"]}
    assert [item["sk"]["S"] for item in _items(stack, file_id)] == [f"retired#{started['version']}"]
    if "path" in started:
        claim = (
            boto3.client("dynamodb")
            .get_item(
                TableName=stack.env["FSNODE_CHUNKS_TABLE"],
                Key={"pk": {"S": f"path#{started['path']}"}, "sk": {"S": "claim"}},
            )
            .get("Item")
        )
        assert claim is None or claim["file_id"]["S"] != file_id
    collect_version(file_id, started["version"])
    assert _items(stack, file_id) == []
    s3 = boto3.client("s3")
    bucket = stack.env["FSNODE_BUCKET"]
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"files/{file_id}/").get("KeyCount") == 0
    assert (
        s3.list_objects_v2(
            Bucket=bucket,
            Prefix=version_manifest_key(file_id, started["version"]),
        ).get("KeyCount")
        == 0
    )
    with pytest.raises(ClientError) as aborted:
        s3.list_parts(
            Bucket=bucket,
            Key=f"files/{file_id}/{started['version']}",
            UploadId=started["upload_id"],
        )
    assert aborted.value.response["Error"]["Code"] == "NoSuchUpload"


def test_each_part_url_signs_its_declared_checksum(cp_api: Any) -> None:
    data = os.urandom(6 * CHUNK + 3)
    started = start(cp_api, data)
    declared = part_hashes(data)
    assert [p["sha256"] for p in started["parts"]] == declared
    for part, digest in zip(started["parts"], declared, strict=True):
        assert part["headers"] == {"x-amz-checksum-sha256": b64(digest)}
        query = parse_qs(urlsplit(part["url"]).query)
        # SigV4 with the checksum as a signed header: S3 takes the PUT only with that value.
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert "x-amz-checksum-sha256" in query["X-Amz-SignedHeaders"][0].split(";")


def test_s3_refuses_a_part_whose_bytes_do_not_match(cp_api: Any, cp_stack: Any) -> None:
    data = os.urandom(2 * CHUNK)
    started = start(cp_api, data)
    (part,) = started["parts"]
    corrupted = bytearray(data)
    corrupted[12345] ^= 0xFF
    refused = put(part, bytes(corrupted))
    assert refused.status_code == 400 and "<Code>BadDigest</Code>" in refused.text
    # Without the header the URL's signature does not hold (S3: 403); moto checks no
    # signatures, but the upload's SHA256 algorithm refuses a part without a checksum.
    bare = put(part, data, headers={})
    assert bare.status_code in (400, 403)
    answer = complete(cp_api, started, ['"0"'])
    assert answer.status_code == 400, answer.body
    assert error_of(answer)["details"]["part_number"] == 1
    assert_nothing_visible(cp_api, cp_stack, started)


def test_complete_refuses_a_part_whose_checksum_is_not_the_declared_one(
    cp_api: Any, cp_stack: Any
) -> None:
    data = os.urandom(6 * CHUNK + 100)
    started = start(cp_api, data)
    first, second = started["parts"]
    etags = [put(first, data).headers["ETag"]]
    # Bytes that reached S3 another way (direct write access), checksummed by S3 itself:
    # S3 took them, but they are not what POST /files declared.
    other = os.urandom(second["length"])
    bucket = cp_stack.env["FSNODE_BUCKET"]
    key = f"files/{started['file_id']}/{started['version']}"
    etags.append(
        boto3.client("s3").upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=started["upload_id"],
            PartNumber=2,
            Body=other,
            ChecksumSHA256=b64(hashlib.sha256(other).hexdigest()),
        )["ETag"]
    )
    answer = complete(cp_api, started, etags)
    assert answer.status_code == 400, answer.body
    error = error_of(answer)
    assert error["code"] == "invalid_input" and "SHA-256" in error["message"]
    assert error["details"] == {
        "field": "parts",
        "file_id": started["file_id"],
        "part_number": 2,
        "declared": part_hashes(data)[1],
        "uploaded": hashlib.sha256(other).hexdigest(),
    }
    assert_nothing_visible(cp_api, cp_stack, started)
    # The refusal discarded the upload: completing it again finds nothing.
    assert complete(cp_api, started, etags).status_code == 404


def test_a_refused_new_version_leaves_the_current_one_serving(cp_api: Any, cp_stack: Any) -> None:
    first, done = upload(cp_api, os.urandom(CHUNK + 7))
    assert done.status_code == 200
    current = done.json_body
    data = os.urandom(CHUNK + 7)
    started = start(cp_api, data, file_id=first["file_id"])
    (part,) = started["parts"]
    other = os.urandom(part["length"])
    bucket = cp_stack.env["FSNODE_BUCKET"]
    etag = boto3.client("s3").upload_part(
        Bucket=bucket,
        Key=f"files/{first['file_id']}/{started['version']}",
        UploadId=started["upload_id"],
        PartNumber=1,
        Body=other,
        ChecksumSHA256=b64(hashlib.sha256(other).hexdigest()),
    )["ETag"]
    answer = complete(cp_api, started, [etag])
    assert answer.status_code == 400, answer.body
    assert cp_api.call("GET", f"/files/{first['file_id']}").json_body == current
    body = boto3.client("s3").get_object(Bucket=bucket, Key=current["key"])["Body"].read()
    assert len(body) == current["size"]
    assert (
        boto3.client("s3")
        .list_objects_v2(
            Bucket=bucket,
            Prefix=f"files/{first['file_id']}/{started['version']}",
        )
        .get("KeyCount")
        == 0
    )


def test_parts_beyond_the_layout_are_refused(cp_api: Any, cp_stack: Any) -> None:
    data = os.urandom(1000)
    started = start(cp_api, data)
    (part,) = started["parts"]
    etag = put(part, data).headers["ETag"]
    extra = b"more bytes"
    boto3.client("s3").upload_part(
        Bucket=cp_stack.env["FSNODE_BUCKET"],
        Key=f"files/{started['file_id']}/{started['version']}",
        UploadId=started["upload_id"],
        PartNumber=2,
        Body=extra,
        ChecksumSHA256=b64(hashlib.sha256(extra).hexdigest()),
    )
    answer = complete(cp_api, started, [etag])
    assert answer.status_code == 400 and error_of(answer)["details"]["part_numbers"] == [2]
    assert_nothing_visible(cp_api, cp_stack, started)


def test_an_empty_file_has_one_empty_checked_part(cp_api: Any) -> None:
    started, done = upload(cp_api, b"")
    assert [p["sha256"] for p in started["parts"]] == [hashlib.sha256(b"").hexdigest()]
    assert done.status_code == 200, done.body
    assert done.json_body["size"] == 0


def test_complete_publishes_an_upload_s3_already_completed(cp_api: Any, cp_stack: Any) -> None:
    """A complete that finished the S3 upload but failed before publishing can be retried."""
    data = os.urandom(CHUNK)
    started = start(cp_api, data)
    (part,) = started["parts"]
    etag = put(part, data).headers["ETag"]
    boto3.client("s3").complete_multipart_upload(
        Bucket=cp_stack.env["FSNODE_BUCKET"],
        Key=f"files/{started['file_id']}/{started['version']}",
        UploadId=started["upload_id"],
        MultipartUpload={
            "Parts": [
                {
                    "PartNumber": 1,
                    "ETag": etag,
                    "ChecksumSHA256": part["headers"]["x-amz-checksum-sha256"],
                }
            ]
        },
    )
    answer = complete(cp_api, started, [etag])
    assert answer.status_code == 200, answer.body
    assert answer.json_body["version"] == started["version"]


@pytest.mark.parametrize(
    "part_sha256",
    [
        None,
        [],
        ["a" * 64, "b" * 64],
        ["A" * 64],
        ["zz"],
        "a" * 64,
    ],
)
def test_init_checks_part_hashes(cp_api: Any, part_sha256: Any) -> None:
    body: dict[str, Any] = {
        "path": unique_path(),
        "size": CHUNK + 1,
        "content_type": "video/mp4",
        "chunk_sha256": ["a" * 64, "b" * 64],
    }
    if part_sha256 is not None:
        body["part_sha256"] = part_sha256
    answer = cp_api.call("POST", "/files", body)
    assert answer.status_code == 400, part_sha256
    assert error_of(answer)["details"]["field"] == "part_sha256"
