"""Ranged GETs against the local stack's moto server process (``aws_server``, which
installs ``s3_ranges``): byte-exact over real HTTP, as the edges read their origin."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from fsnode.localstack.aws_process import aws_server_process
from fsnode.localstack.resources import LOCAL_CREDENTIALS

SIZE = 6 * 1024 * 1024 + 5  # past moto's in-memory buffer: the key lives in a file


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, bytes]]:
    with aws_server_process(tmp_path_factory.mktemp("aws") / "aws.log") as endpoint:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            config=Config(signature_version="s3v4"),
            **LOCAL_CREDENTIALS,
        )
        s3.create_bucket(Bucket="origin")
        data = os.urandom(SIZE)
        s3.put_object(Bucket="origin", Key="obj", Body=data)
        yield s3, data


def _get(s3: Any, header: str | None) -> requests.Response:
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "origin", "Key": "obj"}, ExpiresIn=600
    )
    return requests.get(url, headers={"Range": header} if header else {}, timeout=30)


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=2097152-4194303", 2097152, 4194303),  # an edge's 2 MiB origin part
        ("bytes=6291000-", 6291000, SIZE - 1),
        (f"bytes={SIZE - 3}-{SIZE + 1000}", SIZE - 3, SIZE - 1),  # past the end: clamped
        ("bytes=-7", SIZE - 7, SIZE - 1),  # suffix
    ],
)
def test_ranges_are_byte_exact(
    origin: tuple[Any, bytes], header: str, first: int, last: int
) -> None:
    s3, data = origin
    answer = _get(s3, header)
    assert answer.status_code == 206
    assert answer.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert answer.content == data[first : last + 1]


def test_whole_object_and_416(origin: tuple[Any, bytes]) -> None:
    s3, data = origin
    whole = _get(s3, None)
    assert whole.status_code == 200 and whole.content == data
    assert _get(s3, f"bytes={SIZE}-").status_code == 416
