"""The local stack's moto patch: multipart part checksums answer as S3 documents.

S3's behaviour, from its API reference (UploadPart, ListParts, CompleteMultipartUpload)
and "Checking object integrity": a part whose bytes do not match its
``x-amz-checksum-sha256`` is refused with ``400 BadDigest`` and not stored; a part's
checksum comes back in ListParts; an upload created with ``ChecksumAlgorithm`` takes
no part without that checksum and completes only with every part's checksum, matching.
moto runs in this process (``mock_aws``) with ``s3_checksums`` installed for the module.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from fsnode.localstack import s3_checksums

BUCKET = "checksums"
PART = 5 * 1024 * 1024  # S3's smallest part but the last


def b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    s3_checksums.install()
    try:
        with mock_aws():
            # Checksums only when asked: the SDK's own default CRC32 would hide what is tested.
            client = boto3.client(
                "s3",
                region_name="us-east-1",
                aws_access_key_id="test",
                aws_secret_access_key="test",
                config=Config(request_checksum_calculation="when_required"),
            )
            client.create_bucket(Bucket=BUCKET)
            yield client
    finally:
        s3_checksums.uninstall()


def _upload(s3: Any, key: str, **extra: Any) -> str:
    return str(s3.create_multipart_upload(Bucket=BUCKET, Key=key, **extra)["UploadId"])


def _error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    response = excinfo.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def test_a_part_with_its_checksum_is_kept_and_listed(s3: Any) -> None:
    upload_id = _upload(s3, "good", ChecksumAlgorithm="SHA256")
    data = [os.urandom(PART), os.urandom(1000)]
    sent = [
        s3.upload_part(
            Bucket=BUCKET,
            Key="good",
            UploadId=upload_id,
            PartNumber=n,
            Body=body,
            ChecksumSHA256=b64sha256(body),
        )
        for n, body in enumerate(data, start=1)
    ]
    assert [answer["ChecksumSHA256"] for answer in sent] == [b64sha256(b) for b in data]
    parts = s3.list_parts(Bucket=BUCKET, Key="good", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ChecksumSHA256"]) for p in parts] == [
        (1, PART, b64sha256(data[0])),
        (2, 1000, b64sha256(data[1])),
    ]
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="good",
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [
                {"PartNumber": n, "ETag": a["ETag"], "ChecksumSHA256": a["ChecksumSHA256"]}
                for n, a in enumerate(sent, start=1)
            ]
        },
    )
    assert s3.get_object(Bucket=BUCKET, Key="good")["Body"].read() == b"".join(data)


def test_wrong_bytes_are_bad_digest_and_not_stored(s3: Any) -> None:
    upload_id = _upload(s3, "bad", ChecksumAlgorithm="SHA256")
    with pytest.raises(ClientError) as excinfo:
        s3.upload_part(
            Bucket=BUCKET,
            Key="bad",
            UploadId=upload_id,
            PartNumber=1,
            Body=b"these bytes",
            ChecksumSHA256=b64sha256(b"other bytes"),
        )
    assert _error(excinfo)[:2] == (400, "BadDigest")
    assert s3.list_parts(Bucket=BUCKET, Key="bad", UploadId=upload_id).get("Parts", []) == []


def test_a_value_that_is_no_digest_is_invalid(s3: Any) -> None:
    upload_id = _upload(s3, "junk")
    with pytest.raises(ClientError) as excinfo:
        s3.upload_part(
            Bucket=BUCKET,
            Key="junk",
            UploadId=upload_id,
            PartNumber=1,
            Body=b"x",
            ChecksumSHA256="bm90IGEgZGlnZXN0",
        )
    status, code, message = _error(excinfo)
    assert (status, code) == (400, "InvalidRequest") and "x-amz-checksum-sha256" in message


def test_a_checksummed_upload_takes_no_part_without_its_checksum(s3: Any) -> None:
    upload_id = _upload(s3, "bare", ChecksumAlgorithm="SHA256")
    with pytest.raises(ClientError) as excinfo:
        s3.upload_part(Bucket=BUCKET, Key="bare", UploadId=upload_id, PartNumber=1, Body=b"x")
    status, code, message = _error(excinfo)
    assert (status, code) == (400, "InvalidRequest") and "expected checksum Type: sha256" in message


def test_complete_needs_every_parts_checksum_and_the_right_one(s3: Any) -> None:
    upload_id = _upload(s3, "complete", ChecksumAlgorithm="SHA256")
    body = b"the only part"
    etag = s3.upload_part(
        Bucket=BUCKET,
        Key="complete",
        UploadId=upload_id,
        PartNumber=1,
        Body=body,
        ChecksumSHA256=b64sha256(body),
    )["ETag"]

    def complete(**part: Any) -> Any:
        return s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key="complete",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag, **part}]},
        )

    with pytest.raises(ClientError) as missing:
        complete()
    status, code, message = _error(missing)
    assert (status, code) == (400, "InvalidRequest") and "missing for part 1" in message
    with pytest.raises(ClientError) as wrong:
        complete(ChecksumSHA256=b64sha256(b"something else"))
    assert _error(wrong)[:2] == (400, "InvalidPart")
    complete(ChecksumSHA256=b64sha256(body))
    assert s3.get_object(Bucket=BUCKET, Key="complete")["Body"].read() == body


def test_uploads_without_checksums_are_unchanged(s3: Any) -> None:
    upload_id = _upload(s3, "plain")
    etag = s3.upload_part(
        Bucket=BUCKET, Key="plain", UploadId=upload_id, PartNumber=1, Body=b"plain"
    )["ETag"]
    parts = s3.list_parts(Bucket=BUCKET, Key="plain", UploadId=upload_id)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1] and "ChecksumSHA256" not in parts[0]
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="plain",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert s3.get_object(Bucket=BUCKET, Key="plain")["Body"].read() == b"plain"


def test_the_sdks_default_crc32_still_passes(s3: Any) -> None:
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )  # when_supported: CRC32 by default
    upload_id = _upload(client, "crc")
    answer = client.upload_part(
        Bucket=BUCKET, Key="crc", UploadId=upload_id, PartNumber=1, Body=b"crc bytes"
    )
    assert answer["ETag"]


def test_uninstall_restores_moto() -> None:
    from moto.s3.responses import S3Response

    patched = S3Response.upload_part
    s3_checksums.uninstall()
    try:
        assert S3Response.upload_part is not patched
    finally:
        s3_checksums.install()
    assert S3Response.upload_part is not patched  # a fresh wrapper, installed again
