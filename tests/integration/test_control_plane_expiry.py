"""File expiry through the API: at upload and import, on an existing file, across new
versions, and what it does to share URLs. Prune (``by_collect``) is what acts on it."""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from fsnode_core.catalog import ChunkCatalog

from tests.integration.control_plane_helpers import error_of, live_node, put_import_object, upload

DAY = 24 * 3600


def _catalog(stack: Any) -> ChunkCatalog:
    return ChunkCatalog(stack.env["FSNODE_CHUNKS_TABLE"], boto3.client("dynamodb"))


def _due(stack: Any, file_id: str, at: int) -> bool:
    """Whether prune's collection index has the file due by ``at``."""
    return file_id in {m.file_id for m in _catalog(stack).files_to_collect(at)}


def test_an_upload_can_expire_and_the_record_shows_it(cp_api: Any, cp_stack: Any) -> None:
    before = int(time.time())
    started, done = upload(cp_api, os.urandom(100), extra={"expires_in_seconds": DAY})
    assert done.status_code == 200, done.body
    expires = done.json_body["expires_at"]
    assert before + DAY <= expires <= int(time.time()) + DAY
    file_id = started["file_id"]
    assert cp_api.call("GET", f"/files/{file_id}").json_body["expires_at"] == expires
    listed = cp_api.call("GET", "/files?limit=1000").json_body["files"]
    assert {f["file_id"]: f["expires_at"] for f in listed}[file_id] == expires
    assert not _due(cp_stack, file_id, expires - 1) and _due(cp_stack, file_id, expires)

    at = int(time.time()) + 2 * DAY
    _, fixed = upload(cp_api, os.urandom(10), extra={"expires_at": at})
    assert fixed.json_body["expires_at"] == at
    _, plain = upload(cp_api, os.urandom(10))
    assert plain.json_body["expires_at"] is None


def test_patch_sets_moves_and_clears_the_expiry(cp_api: Any, cp_stack: Any) -> None:
    started, _ = upload(cp_api, os.urandom(100))
    file_id = started["file_id"]
    at = int(time.time()) + DAY
    answer = cp_api.call("PATCH", f"/files/{file_id}", {"expires_at": at})
    assert answer.status_code == 200, answer.body
    assert answer.json_body["expires_at"] == at and answer.json_body["status"] == "ready"
    assert _due(cp_stack, file_id, at)
    sooner = cp_api.call("PATCH", f"/files/{file_id}", {"expires_in_seconds": 60}).json_body
    assert sooner["expires_at"] <= int(time.time()) + 60
    assert _due(cp_stack, file_id, sooner["expires_at"])
    cleared = cp_api.call("PATCH", f"/files/{file_id}", {"expires_at": None})
    assert cleared.status_code == 200 and cleared.json_body["expires_at"] is None
    assert not _due(cp_stack, file_id, at + DAY)  # out of the collection index
    assert cp_api.call("GET", f"/files/{file_id}").json_body["expires_at"] is None
    # Clearing twice is no change and no error.
    assert cp_api.call("PATCH", f"/files/{file_id}", {"expires_at": None}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"expires_at": int(time.time()) - 10},  # in the past
        {"expires_at": 0},
        {"expires_at": int(time.time()) + DAY, "expires_in_seconds": 5},  # both
        {"expires_in_seconds": 0},
        {"expires_in_seconds": -5},
        {"expires_in_seconds": None},
        {"expires_at": "tomorrow"},
        {"expires_at": 1.5e9},
        {"expires_at": True},
        {"expires_at": 10**13},  # past 9999-12-31
        {"unrelated": 1},
    ],
)
def test_patch_refuses_bad_expiries_and_changes_nothing(cp_api: Any, body: dict[str, Any]) -> None:
    started, _ = upload(cp_api, os.urandom(10), extra={"expires_in_seconds": DAY})
    file_id = started["file_id"]
    before = cp_api.call("GET", f"/files/{file_id}").json_body
    answer = cp_api.call("PATCH", f"/files/{file_id}", body)
    assert answer.status_code == 400, (body, answer.body)
    assert error_of(answer)["code"] == "invalid_input"
    assert cp_api.call("GET", f"/files/{file_id}").json_body == before


def test_patch_answers_401_404_410_and_refuses_bad_ids(cp_api: Any) -> None:
    at = {"expires_at": int(time.time()) + DAY}
    started, _ = upload(cp_api, os.urandom(10))
    file_id = started["file_id"]
    assert cp_api.call("PATCH", f"/files/{file_id}", at, key=False).status_code == 401
    assert cp_api.call("PATCH", f"/files/{'c' * 32}", at).status_code == 404
    assert cp_api.call("PATCH", "/files/..%2Fx", at).status_code == 400
    assert cp_api.call("DELETE", f"/files/{file_id}").status_code == 202
    gone = cp_api.call("PATCH", f"/files/{file_id}", at)
    assert gone.status_code == 410 and error_of(gone)["code"] == "gone"
    # Upload init checks the expiry before anything is created.
    bad = cp_api.call(
        "POST",
        "/files",
        {
            "path": "x",
            "size": 0,
            "content_type": "video/mp4",
            "chunk_sha256": [],
            "part_sha256": ["0" * 64],
            "expires_at": int(time.time()) - 1,
        },
    )
    assert bad.status_code == 400 and error_of(bad)["details"]["field"] == "expires_at"


def test_a_new_version_keeps_the_files_expiry_unless_it_sets_one(cp_api: Any) -> None:
    started, first = upload(cp_api, os.urandom(100), extra={"expires_in_seconds": DAY})
    file_id, expires = started["file_id"], first.json_body["expires_at"]
    _, second = upload(cp_api, os.urandom(200), file_id=file_id)
    assert second.status_code == 200, second.body
    assert second.json_body["version"] != started["version"]
    assert second.json_body["expires_at"] == expires
    at = int(time.time()) + 3 * DAY
    _, third = upload(cp_api, os.urandom(300), file_id=file_id, extra={"expires_at": at})
    assert third.json_body["expires_at"] == at
    cp_api.call("PATCH", f"/files/{file_id}", {"expires_at": None})
    _, fourth = upload(cp_api, os.urandom(400), file_id=file_id)
    assert fourth.json_body["expires_at"] is None


def test_an_expiry_set_while_a_new_version_completes_is_carried_over(
    cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PATCH that lands between complete's read and its publish is not lost: the
    publish is conditional on the expiry it read, fails, reads again and carries it."""
    started, _ = upload(cp_api, os.urandom(100))
    file_id, old_version = started["file_id"], started["version"]
    at = int(time.time()) + 5 * DAY
    real = ChunkCatalog.publish_version
    calls: list[int] = []

    def publish_after_a_patch(self: ChunkCatalog, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            patched = cp_api.call("PATCH", f"/files/{file_id}", {"expires_at": at})
            assert patched.status_code == 200 and patched.json_body["version"] == old_version
        real(self, *args, **kwargs)

    monkeypatch.setattr(ChunkCatalog, "publish_version", publish_after_a_patch)
    _, second = upload(cp_api, os.urandom(200), file_id=file_id)
    assert second.status_code == 200, second.body
    assert second.json_body["expires_at"] == at and len(calls) == 2


def test_import_takes_an_expiry_and_a_repeat_sets_a_new_one(cp_api: Any, cp_stack: Any) -> None:
    key, _ = put_import_object(cp_stack, b"x" * 10)
    body = {"bucket": cp_stack.env["FSNODE_BUCKET"], "key": key}
    first = cp_api.call("POST", "/files/import", {**body, "expires_in_seconds": DAY})
    assert first.status_code == 200, first.body
    record = first.json_body
    assert record["expires_at"] >= int(time.time()) + DAY - 5
    assert _due(cp_stack, record["file_id"], record["expires_at"])
    at = int(time.time()) + 2 * DAY
    again = cp_api.call("POST", "/files/import", {**body, "expires_at": at})
    assert again.status_code == 200 and again.json_body["expires_at"] == at
    assert again.json_body["version"] == record["version"]
    plain = cp_api.call("POST", "/files/import", body).json_body
    assert plain["expires_at"] == at  # no expiry given: the record is answered as it is
    bad = cp_api.call("POST", "/files/import", {**body, "expires_at": 5})
    assert bad.status_code == 400 and error_of(bad)["details"]["field"] == "expires_at"


def test_a_share_never_outlives_its_file(cp_api: Any, cp_stack: Any) -> None:
    live_node(cp_api, cp_stack)
    started, done = upload(cp_api, os.urandom(100), extra={"expires_in_seconds": 600})
    file_id, expires = started["file_id"], done.json_body["expires_at"]
    long = cp_api.call("POST", f"/files/{file_id}/share", {"ttl_seconds": 7 * DAY})
    assert long.status_code == 200, long.body
    assert long.json_body["expires"] == expires
    query = dict(parse_qsl(urlsplit(long.json_body["share_url"]).query))
    assert int(query["exp"]) == expires  # the signed expiry, which edges check
    short = cp_api.call("POST", f"/files/{file_id}/share", {"ttl_seconds": 60}).json_body
    assert short["expires"] <= int(time.time()) + 60
    late = cp_api.call(
        "POST", f"/files/{file_id}/share", {"ttl_seconds": 60, "not_before": expires}
    )
    assert late.status_code == 400 and error_of(late)["details"]["field"] == "not_before"

    # Past its expiry but not yet collected (prune has not run): no new links, and old
    # links stop redirecting at once.
    url = urlsplit(long.json_body["share_url"])
    assert cp_api.call("GET", f"{url.path}?{url.query}", key=False).status_code == 307
    meta = _catalog(cp_stack).get_file(file_id)
    assert meta is not None
    _catalog(cp_stack).set_expiry(
        meta, int(time.time()) - 1, seq=meta.seq + 1, now=int(time.time())
    )
    assert cp_api.call("GET", f"{url.path}?{url.query}", key=False).status_code == 410
    minted = cp_api.call("POST", f"/files/{file_id}/share", {"ttl_seconds": 60})
    assert minted.status_code == 410 and error_of(minted)["code"] == "gone"
