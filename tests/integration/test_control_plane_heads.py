"""A file's published head never goes back to an older ``seq`` (docs/PROTOCOL.md,
"Write order and repair"): each publisher reads the head and replaces it only with a
newer state, by a conditional PUT, so a slow writer holding an older state (the request
handler, ``publish_file``, prune) cannot bring a deleted file back for edges."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from fsnode_core.errors import Unavailable
from fsnode_core.ids import new_id
from fsnode_core.models import FileRecord
from fsnode_core.published_keys import head_key

from tests.helpers import a_head
from tests.integration.control_plane_helpers import (
    chunk_catalog,
    published_head,
    tree_keys,
    unique_path,
    upload,
)


def _record(stack: Any, file_id: str) -> FileRecord:
    meta = chunk_catalog(stack).get_file(file_id)
    assert meta is not None
    return meta


@contextmanager
def _head_puts(
    file_id: str, before: Callable[[dict[str, Any]], None] | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Every head PUT the control plane's S3 client sends for ``file_id`` (its ``seq``
    and condition), ``before`` called with each as it is about to be sent."""
    from chalicelib import aws

    sent: list[dict[str, Any]] = []
    key = head_key(file_id)

    def hook(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") != key:
            return
        put = {
            "seq": json.loads(params["Body"])["seq"],
            "condition": params.get("IfMatch") or params.get("IfNoneMatch"),
        }
        sent.append(put)
        if before is not None:
            before(put)

    events = aws.client("s3").meta.events
    events.register("before-parameter-build.s3.PutObject", hook)
    try:
        yield sent
    finally:
        events.unregister("before-parameter-build.s3.PutObject", hook)


def _two_unpublished_changes(
    api: Any, stack: Any, monkeypatch: pytest.MonkeyPatch, *, published_before: bool
) -> tuple[str, str, FileRecord, FileRecord]:
    """A file with two recorded changes that no publisher has written yet: an expiry
    (ready) and then its delete. Its head is the upload's, or none."""
    from chalicelib import publisher

    real = publisher.publish
    folder = unique_path("heads") + "/"
    if not published_before:
        monkeypatch.setattr(publisher, "publish", lambda meta: None)
    started, done = upload(api, os.urandom(100), path=f"{folder}a.ts")
    assert done.status_code == 200, done.body
    file_id = started["file_id"]
    monkeypatch.setattr(publisher, "publish", lambda meta: None)
    at = int(time.time()) + 3600
    assert api.call("PATCH", f"/files/{file_id}", {"expires_at": at}).status_code == 200
    ready = _record(stack, file_id)
    assert api.call("DELETE", f"/files/{file_id}").status_code == 202
    deleted = _record(stack, file_id)
    monkeypatch.setattr(publisher, "publish", real)
    assert ready.status == "ready" and deleted.seq > ready.seq
    return file_id, folder, ready, deleted


def test_a_stale_publish_does_not_bring_a_deleted_file_back(
    cp_api: Any, cp_client: Any, cp_stack: Any
) -> None:
    from chalicelib import publisher

    folder = unique_path("heads") + "/"
    started, _ = upload(cp_api, os.urandom(100), path=f"{folder}a.ts")
    file_id = started["file_id"]
    ready = _record(cp_stack, file_id)
    assert cp_api.call("DELETE", f"/files/{file_id}").status_code == 202
    assert cp_client.lambda_.invoke("publish_file", {"file_id": file_id}).payload["settled"]
    assert tree_keys(cp_stack, folder) == []

    with _head_puts(file_id) as sent:
        publisher.publish(ready)  # a writer that read the file before the delete, late
    head = published_head(cp_stack, file_id)
    assert head is not None and (head.status, head.version) == ("deleted", None)
    assert head.seq > ready.seq
    assert sent == []  # it read the newer head and wrote nothing
    assert tree_keys(cp_stack, folder) == []  # nor its tree key


@pytest.mark.parametrize("published_before", [True, False], ids=["replaced", "created"])
def test_of_two_racing_publishers_the_newer_head_stays(
    cp_api: Any,
    cp_client: Any,
    cp_stack: Any,
    monkeypatch: pytest.MonkeyPatch,
    published_before: bool,
) -> None:
    """The older writer reads the head (the upload's, or none), the newer one publishes,
    then the older one's conditional PUT is refused: it reads again and stops."""
    from chalicelib import publisher

    file_id, folder, ready, deleted = _two_unpublished_changes(
        cp_api, cp_stack, monkeypatch, published_before=published_before
    )

    def newer_first(put: dict[str, Any]) -> None:
        if put["seq"] == ready.seq:
            publisher.publish(deleted)

    with _head_puts(file_id, newer_first) as sent:
        publisher.publish(ready)
    head = published_head(cp_stack, file_id)
    assert head is not None and (head.status, head.seq) == ("deleted", deleted.seq)
    assert [p["seq"] for p in sent] == [ready.seq, deleted.seq]  # the older one once, refused
    older = sent[0]["condition"]
    if published_before:
        assert older not in (None, "*"), sent  # If-Match: the upload's head's ETag
    else:
        assert older == "*", sent  # If-None-Match: there was none
    settled = cp_client.lambda_.invoke("publish_file", {"file_id": file_id}).payload
    assert settled["settled"] and settled["seq"] == deleted.seq
    assert tree_keys(cp_stack, folder) == []


def test_settle_holding_an_older_state_reads_again_and_never_writes_it(
    cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """publish_file read the file just before it changed; the change's own writer has
    published the newer head already."""
    from chalicelib import aws, publisher

    file_id, _, ready, deleted = _two_unpublished_changes(
        cp_api, cp_stack, monkeypatch, published_before=True
    )
    publisher.publish(deleted)
    catalog = aws.chunk_catalog()
    reads = iter([ready])
    real_get = catalog.get_file
    monkeypatch.setattr(catalog, "get_file", lambda fid: next(reads, None) or real_get(fid))

    with _head_puts(file_id) as sent:
        settled = publisher.settle(file_id)
    assert settled["settled"] and settled["seq"] == deleted.seq
    head = published_head(cp_stack, file_id)
    assert head is not None and head.seq == deleted.seq and head.status == "deleted"
    assert sent == []  # neither the stale head nor the current one again


def test_settle_writes_the_tree_key_a_writer_left_undone_under_its_own_head(
    cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request handler PUT the head and stopped before the tree key: the head in S3
    is the state's own (an equal ``seq``), so settle goes on and writes the key."""
    from chalicelib import aws, heads, publisher

    def head_only(meta: FileRecord) -> None:
        heads.put_head(aws.client("s3"), cp_stack.env["FSNODE_BUCKET"], publisher.head_of(meta))

    monkeypatch.setattr(publisher, "publish", head_only)
    folder = unique_path("heads") + "/"
    started, done = upload(cp_api, os.urandom(100), path=f"{folder}a.ts")
    assert done.status_code == 200, done.body
    file_id = started["file_id"]
    assert published_head(cp_stack, file_id) is not None and tree_keys(cp_stack, folder) == []
    with _head_puts(file_id) as sent:
        settled = publisher.settle(file_id)
    assert settled["settled"] and sent == []
    assert len(tree_keys(cp_stack, folder)) == 1


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"format": 1, "seq": 99}', json.dumps({"seq": "2"}).encode()],
    ids=["not-json", "not-an-object", "missing-fields", "seq-not-a-number"],
)
def test_a_head_that_does_not_parse_is_replaced(cp_client: Any, cp_stack: Any, body: bytes) -> None:
    """Edges cannot read it either (502): any state is a repair."""
    from chalicelib import aws, heads

    bucket, file_id = cp_stack.env["FSNODE_BUCKET"], new_id()
    boto3.client("s3").put_object(Bucket=bucket, Key=head_key(file_id), Body=body)
    assert heads.put_head(aws.client("s3"), bucket, a_head(file_id, 1)) is True
    head = published_head(cp_stack, file_id)
    assert head is not None and head.seq == 1


def test_a_head_that_keeps_changing_gives_up_after_a_bounded_number_of_reads(
    cp_client: Any, cp_stack: Any
) -> None:
    from chalicelib import aws, heads

    bucket, file_id = cp_stack.env["FSNODE_BUCKET"], new_id()
    other = boto3.client("s3")
    other.put_object(Bucket=bucket, Key=head_key(file_id), Body=a_head(file_id, 1).to_json())
    rewrites = iter(range(2, 100))

    def another_writer_first(put: dict[str, Any]) -> None:
        # Older than ours, but a new ETag each time: every conditional PUT is refused.
        body = dataclasses.replace(a_head(file_id, 1), updated_at=next(rewrites)).to_json()
        other.put_object(Bucket=bucket, Key=head_key(file_id), Body=body)

    with _head_puts(file_id, another_writer_first) as sent, pytest.raises(Unavailable):
        heads.put_head(aws.client("s3"), bucket, a_head(file_id, 50))
    assert len(sent) == heads.HEAD_ATTEMPTS
    head = published_head(cp_stack, file_id)
    assert head is not None and head.seq == 1


def test_other_s3_errors_are_not_taken_for_a_race(cp_client: Any) -> None:
    from chalicelib import aws, heads

    with pytest.raises(ClientError) as refused:
        heads.put_head(aws.client("s3"), "fsnode-no-such-bucket", a_head(new_id(), 1))
    assert refused.value.response["Error"]["Code"] == "NoSuchBucket"
