"""Files named by path, listed by prefix, and what the control plane publishes to S3 for
edges (head, tree keys, the by_sync marker that prune repairs)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from fsnode_core.published_keys import TREE_PREFIX, parse_tree_page

from tests.integration.control_plane_helpers import (
    CHUNK,
    chunk_catalog,
    chunk_hashes,
    error_of,
    part_hashes,
    published_head,
    tree_keys,
    unique_path,
    upload,
)


def test_a_path_names_one_live_file_and_uploading_again_makes_a_version(
    cp_api: Any, cp_stack: Any
) -> None:
    folder = unique_path("hls") + "/"
    first, done = upload(
        cp_api, os.urandom(100), path=f"{folder}master.m3u8", extra={"content_type": None}
    )
    record = done.json_body
    assert (record["path"], record["name"]) == (f"{folder}master.m3u8", "master.m3u8")
    assert record["content_type"] == "application/vnd.apple.mpegurl"  # by extension
    assert first["path"] == record["path"]
    second, again = upload(cp_api, os.urandom(200), path=f"{folder}master.m3u8")
    assert again.status_code == 200, again.body
    assert second["file_id"] == first["file_id"] and second["version"] != first["version"]
    assert again.json_body["size"] == 200 and again.json_body["created_at"] == record["created_at"]
    listed = cp_api.call("GET", f"/files?prefix={folder}").json_body["files"]
    assert [(f["file_id"], f["version"]) for f in listed] == [(first["file_id"], second["version"])]


def test_two_first_uploads_to_one_path_make_one_file(cp_api: Any) -> None:
    path = unique_path("a.ts")
    data = os.urandom(10)
    body = {
        "path": path,
        "size": len(data),
        "chunk_sha256": chunk_hashes(data),
        "part_sha256": part_hashes(data),
    }
    first = cp_api.call("POST", "/files", body)
    assert first.status_code == 200, first.body
    second = cp_api.call("POST", "/files", body)  # the same path, while the first is open
    assert second.status_code == 409 and error_of(second)["code"] == "conflict"


def test_listing_by_prefix_is_a_query_in_path_order(cp_api: Any, cp_stack: Any) -> None:
    from chalicelib import aws

    folder = unique_path("tree") + "/"
    for name in ("b/2.ts", "a.m3u8", "b/1.ts", "c"):
        upload(cp_api, os.urandom(10), path=folder + name)
    upload(cp_api, os.urandom(10), path=folder.rstrip("/") + "2/x")  # a sibling folder
    sent: list[str] = []
    client = aws.client("dynamodb")

    def hook(request: Any, **_: Any) -> None:
        sent.append(str(request.headers.get("X-Amz-Target", b"")))

    client.meta.events.register("before-send.dynamodb.*", hook)
    try:
        pages, token = [], None
        while True:
            answer = cp_api.call(
                "GET", f"/files?prefix={folder}&limit=3" + (f"&next_token={token}" if token else "")
            )
            assert answer.status_code == 200, answer.body
            pages.append([f["path"] for f in answer.json_body["files"]])
            token = answer.json_body["next_token"]
            if not token:
                break
    finally:
        client.meta.events.unregister("before-send.dynamodb.*", hook)
    assert [p[len(folder) :] for page in pages for p in page] == ["a.m3u8", "b/1.ts", "b/2.ts", "c"]
    assert all("Query" in target for target in sent) and not any("Scan" in t for t in sent)
    sub = cp_api.call("GET", f"/files?prefix={folder}b/").json_body["files"]
    assert [f["name"] for f in sub] == ["1.ts", "2.ts"]


def test_each_change_is_published_to_s3_and_the_marker_cleared(
    cp_api: Any, cp_client: Any, cp_stack: Any
) -> None:
    folder = unique_path("pub") + "/"
    started, _ = upload(cp_api, os.urandom(100), path=f"{folder}a.ts")
    file_id = started["file_id"]
    head = published_head(cp_stack, file_id)
    assert head is not None and (head.status, head.version) == ("ready", started["version"])
    page = parse_tree_page(tree_keys(cp_stack, folder), folder)
    assert {k: (v.file_id, v.version) for k, v in page.items()} == {
        "a.ts": (file_id, started["version"])
    }
    # The request handler only PUTs: the marker waits for the publisher (no machine
    # here), which may delete.
    assert file_id in chunk_catalog(cp_stack).unsynced(10**16 - 1, 1000)
    settled = cp_client.lambda_.invoke("publish_file", {"file_id": file_id}).payload
    assert settled["settled"] is True
    assert file_id not in chunk_catalog(cp_stack).unsynced(10**16 - 1, 1000)

    second, _ = upload(cp_api, os.urandom(50), path=f"{folder}a.ts")
    newer = published_head(cp_stack, file_id)
    assert newer is not None and newer.version == second["version"] and newer.seq > head.seq
    assert len(tree_keys(cp_stack, folder)) == 2  # the old key stays until the publisher
    page = parse_tree_page(tree_keys(cp_stack, folder), folder)
    assert page["a.ts"].version == second["version"]  # the highest seq wins meanwhile
    assert (
        cp_client.lambda_.invoke("publish_file", {"file_id": file_id}).payload["stale_keys_removed"]
        == 1
    )
    assert len(tree_keys(cp_stack, folder)) == 1

    assert cp_api.call("DELETE", f"/files/{file_id}").status_code == 202
    gone = published_head(cp_stack, file_id)
    assert gone is not None and (gone.status, gone.version) == ("deleted", None)
    cp_client.lambda_.invoke("publish_file", {"file_id": file_id})
    assert tree_keys(cp_stack, folder) == []


def test_prune_publishes_what_a_writer_left_behind(
    cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import prune, publisher

    # The writer stops after its DynamoDB write (a Lambda timed out, say).
    real = publisher.publish
    monkeypatch.setattr(publisher, "publish", lambda meta: None)
    started, done = upload(cp_api, os.urandom(100))
    assert done.status_code == 200
    monkeypatch.setattr(publisher, "publish", real)
    file_id = started["file_id"]
    assert published_head(cp_stack, file_id) is None
    # A change younger than the sync grace is its writer's business...
    assert file_id not in prune.run()["published"]
    # ...an older one prune publishes (the oldest first, a bounded number per run: the
    # shared test stack holds every other test's markers too).
    for _ in range(50):
        if file_id in prune.settle_published(time.time() + prune.SYNC_GRACE_SECONDS + 1):
            break
    else:
        raise AssertionError("prune never published the file")
    head = published_head(cp_stack, file_id)
    assert head is not None and head.version == started["version"]
    assert file_id not in chunk_catalog(cp_stack).unsynced(10**16 - 1, 1000)


def test_an_expiry_change_is_published_in_thepublished_head(cp_api: Any, cp_stack: Any) -> None:
    started, _ = upload(cp_api, os.urandom(10))
    at = int(time.time()) + 3600
    assert (
        cp_api.call("PATCH", f"/files/{started['file_id']}", {"expires_at": at}).status_code == 200
    )
    head = published_head(cp_stack, started["file_id"])
    assert head is not None and head.expires_at == at


def test_paths_do_not_leak_into_keys_or_other_folders(cp_api: Any, cp_stack: Any) -> None:
    folder = unique_path("odd") + "/"
    name = "ünï cödé!$&'()*+,;=:@ %41.ts"
    _, done = upload(cp_api, os.urandom(10), path=folder + name)
    assert done.status_code == 200, done.body
    keys = tree_keys(cp_stack, folder)
    assert len(keys) == 1 and keys[0].startswith(TREE_PREFIX + folder + name + "!")
    assert list(parse_tree_page(keys, folder)) == [name]
    record = json.loads(json.dumps(done.json_body))
    assert record["path"] == folder + name
    big = os.urandom(CHUNK + 1)
    assert upload(cp_api, big, path=folder + "x" * 800)[1].status_code == 200
