"""The local stack's moto patch: ranged GETs read only their bytes, answers unchanged.

moto runs in this process (``mock_aws``) with ``s3_ranges`` installed for each
test and removed after it. Every answer is compared byte for byte with a slice of
the uploaded data, and the key's buffer is watched to count the bytes read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from fsnode.localstack import s3_ranges

BUCKET = "ranges"
# Past moto's in-memory limit (5 MiB - 1 KiB), so the key's buffer is a file on disk.
BIG = 6 * 1024 * 1024 + 17
SMALL = 1000


class CountingBuffer:
    """Stands in for a key's buffer and adds up what is read from it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.inner.read(size)
        self.read_bytes += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    s3_ranges.install()
    try:
        with mock_aws():
            client = boto3.client(
                "s3",
                region_name="us-east-1",
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
            client.create_bucket(Bucket=BUCKET)
            yield client
    finally:
        s3_ranges.uninstall()


@pytest.fixture(scope="module")
def objects(s3: Any) -> dict[str, bytes]:
    data = {"big": os.urandom(BIG), "small": os.urandom(SMALL)}
    for key, body in data.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return data


def _key(name: str) -> Any:
    from moto.s3.models import s3_backends

    return s3_backends["123456789012"]["aws"].get_object(BUCKET, name)


def _get(s3: Any, key: str, range_header: str | None = None, **extra: Any) -> dict[str, Any]:
    params = {"Bucket": BUCKET, "Key": key, **extra}
    if range_header is not None:
        params["Range"] = range_header
    answer = s3.get_object(**params)
    return {**answer, "Body": answer["Body"].read()}


@pytest.mark.parametrize("key", ["big", "small"])
@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-99", 10, 99),
        ("bytes=100-", 100, None),  # open-ended
        ("bytes=-100", -100, None),  # suffix
        ("bytes=-999999999", 0, None),  # suffix longer than the object: all of it
        ("bytes={end_minus_5}-{past_end}", -5, None),  # last byte past the end: clamped
        ("bytes={last}-{last}", -1, None),  # the very last byte
    ],
)
def test_ranges_are_byte_exact(
    s3: Any, objects: dict[str, bytes], key: str, spec: str, first: int, last: int | None
) -> None:
    data = objects[key]
    size = len(data)
    header = spec.format(end_minus_5=size - 5, past_end=size + 100, last=size - 1)
    begin = first % size if first < 0 else first
    end = size - 1 if last is None else last
    answer = _get(s3, key, header)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert answer["Body"] == data[begin : end + 1]
    assert answer["ContentRange"] == f"bytes {begin}-{end}/{size}"
    assert answer["ContentLength"] == end - begin + 1


def test_a_range_reads_only_its_bytes(s3: Any, objects: dict[str, bytes]) -> None:
    key = _key("big")
    counting = CountingBuffer(key._value_buffer)
    key._value_buffer = counting
    try:
        answer = _get(s3, "big", "bytes=4096-69631")  # 64 KiB in the middle
        assert answer["Body"] == objects["big"][4096:69632]
        assert counting.read_bytes == 65536  # not the whole 6 MiB object
        suffix = _get(s3, "big", "bytes=-10")
        assert suffix["Body"] == objects["big"][-10:]
        assert counting.read_bytes == 65536 + 10
    finally:
        key._value_buffer = counting.inner


def test_past_the_end_is_416(s3: Any, objects: dict[str, bytes]) -> None:
    for header in (f"bytes={BIG}-", f"bytes={BIG + 10}-{BIG + 20}", "bytes=-0"):
        with pytest.raises(ClientError) as caught:
            s3.get_object(Bucket=BUCKET, Key="big", Range=header)
        assert caught.value.response["Error"]["Code"] == "InvalidRange", header


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=0-1,5-6",
        "bytes=abc",
        "bytes=9-3",
        "items=0-1",
        "bytes=5-5",
        "bytes=-3",
        "bytes=6291460-",
    ],
)
def test_answers_are_what_moto_itself_gives(
    s3: Any, objects: dict[str, bytes], header: str | None
) -> None:
    params = {} if header is None else {"Range": header}

    def answer() -> tuple[int, bytes, str | None]:
        got = s3.get_object(Bucket=BUCKET, Key="big", **params)
        return (
            got["ResponseMetadata"]["HTTPStatusCode"],
            got["Body"].read(),
            got.get("ContentRange"),
        )

    patched = answer()
    s3_ranges.uninstall()
    try:
        plain = answer()
    finally:
        s3_ranges.install()
    assert patched == plain
    if header in (None, "", "bytes=0-1,5-6", "bytes=abc", "bytes=9-3"):
        assert patched[:2] == (200, objects["big"])  # not one satisfiable range: all of it


def test_part_number_and_head_are_unchanged(s3: Any, objects: dict[str, bytes]) -> None:
    part = _get(s3, "small", PartNumber=1)
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert part["Body"] == objects["small"]
    head = s3.head_object(Bucket=BUCKET, Key="big", Range="bytes=0-9")
    assert head["ContentLength"] == 10


def test_overwritten_and_reinstalled_keys_serve_current_bytes(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"first version")
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"second")
    assert _get(s3, "k", "bytes=1-3")["Body"] == b"eco"
    s3_ranges.install()  # idempotent
    assert _get(s3, "k")["Body"] == b"second"


def test_uninstall_restores_moto(s3: Any) -> None:
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    patched = (FakeKey.__dict__["value"], S3Response.get_object, S3Response.key_response)
    s3_ranges.uninstall()
    try:
        plain = (FakeKey.__dict__["value"], S3Response.get_object, S3Response.key_response)
        assert all(a is not b for a, b in zip(patched, plain, strict=True))
        assert S3Response.get_object.__module__ == "moto.s3.responses"
    finally:
        s3_ranges.install()
