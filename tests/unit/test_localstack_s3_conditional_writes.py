"""The local stack's moto patch: conditional PUTs answer as S3's do, racing writers too.

S3's behaviour ("How to prevent object overwrites with conditional writes", PutObject):
``If-Match: <etag>`` writes only over that ETag (quoted or not), else ``412
PreconditionFailed`` (``<Condition>If-Match</Condition>``), ``404 NoSuchKey`` when the
key is absent; ``If-None-Match: *`` writes only where nothing is, else 412; of two
writers that matched the same state, one writes and the other is refused. moto runs in
this process (``mock_aws``) with ``s3_conditional_writes`` installed for the module.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from fsnode.localstack import s3_conditional_writes

BUCKET = "conditional"
PRECONDITION = "At least one of the pre-conditions you specified did not hold"


def _client() -> Any:
    return boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    s3_conditional_writes.install()
    try:
        with mock_aws():
            client = _client()
            client.create_bucket(Bucket=BUCKET)
            yield client
    finally:
        s3_conditional_writes.uninstall()


def _body(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _refusal(call: Any) -> tuple[int, Any]:
    with pytest.raises(ClientError) as refused:
        call()
    response = refused.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]


@pytest.mark.parametrize("quoted", [True, False])
def test_if_match_writes_over_the_etag_it_names(s3: Any, quoted: bool) -> None:
    etag = s3.put_object(Bucket=BUCKET, Key="match", Body=b"one")["ETag"]
    named = etag if quoted else etag.strip('"')  # S3 takes the ETag with or without quotes
    s3.put_object(Bucket=BUCKET, Key="match", Body=b"two", IfMatch=named)
    assert _body(s3, "match") == b"two"


def test_if_match_on_another_etag_is_412_and_writes_nothing(s3: Any) -> None:
    first = s3.put_object(Bucket=BUCKET, Key="moved", Body=b"one")["ETag"]
    s3.put_object(Bucket=BUCKET, Key="moved", Body=b"two")
    status, error = _refusal(
        lambda: s3.put_object(Bucket=BUCKET, Key="moved", Body=b"stale", IfMatch=first)
    )
    assert (status, error) == (
        412,
        {"Code": "PreconditionFailed", "Message": PRECONDITION, "Condition": "If-Match"},
    )
    assert _body(s3, "moved") == b"two"


def test_if_match_on_a_missing_key_is_404(s3: Any) -> None:
    status, error = _refusal(
        lambda: s3.put_object(Bucket=BUCKET, Key="absent", Body=b"x", IfMatch='"0" * 32')
    )
    assert (status, error["Code"]) == (404, "NoSuchKey")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="absent")["KeyCount"] == 0


def test_if_none_match_creates_once(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="create", Body=b"first", IfNoneMatch="*")
    status, error = _refusal(
        lambda: s3.put_object(Bucket=BUCKET, Key="create", Body=b"second", IfNoneMatch="*")
    )
    assert (status, error) == (
        412,
        {"Code": "PreconditionFailed", "Message": PRECONDITION, "Condition": "If-None-Match"},
    )
    assert _body(s3, "create") == b"first"


class _Watched(s3_conditional_writes.KeyLocks):
    """Key locks that report a writer waiting for another's write to land."""

    def __init__(self, waiting: threading.Event) -> None:
        super().__init__()
        self.waiting = waiting

    @contextmanager
    def acquired(self, lock: threading.Lock) -> Iterator[None]:
        if not lock.acquire(blocking=False):
            self.waiting.set()
            lock.acquire()
        try:
            yield
        finally:
            lock.release()


@pytest.mark.parametrize("condition", ["IfMatch", "IfNoneMatch"])
def test_of_two_racing_conditional_writers_one_writes(
    s3: Any, monkeypatch: pytest.MonkeyPatch, condition: str
) -> None:
    """The first writer is held between its check and its write until the second has
    decided (written or been refused: moto alone) or waits for the first (the patch)."""
    from moto.s3.models import S3Backend

    key = f"race-{condition}"
    if condition == "IfMatch":
        expected = {"IfMatch": s3.put_object(Bucket=BUCKET, Key=key, Body=b"base")["ETag"]}
    else:
        expected = {"IfNoneMatch": "*"}
    second_decided = threading.Event()
    monkeypatch.setattr(s3_conditional_writes, "locks", _Watched(second_decided))
    first_checked = threading.Event()
    original = S3Backend.put_object

    def held_put(backend: Any, bucket: str, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == key and not first_checked.is_set():
            first_checked.set()
            assert second_decided.wait(60), "the second writer neither decided nor waited"
        return original(backend, bucket, name, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "put_object", held_put)
    outcomes: dict[str, str] = {}

    def write(body: bytes) -> None:
        try:
            _client().put_object(Bucket=BUCKET, Key=key, Body=body, **expected)
            outcomes[body.decode()] = "written"
        except ClientError as exc:
            outcomes[body.decode()] = exc.response["Error"]["Code"]
        finally:
            if body == b"second":
                second_decided.set()

    first = threading.Thread(target=write, args=(b"first",))
    first.start()
    assert first_checked.wait(60)
    second = threading.Thread(target=write, args=(b"second",))
    second.start()
    first.join()
    second.join()
    assert outcomes == {"first": "written", "second": "PreconditionFailed"}
    assert _body(s3, key) == b"first"
    assert len(s3_conditional_writes.locks) == 0  # nothing kept for keys no longer written
