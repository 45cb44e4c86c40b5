"""Uploads with real presigned PUTs, shares and the /s redirect, against a moto server."""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
from fsnode_core.signing import SharePolicy, ShareSigner, ShareVerifier, parse_keyring
from fsnode_core.version_tickets import open_ticket

from tests.integration.control_plane_helpers import (
    CHUNK,
    chunk_hashes,
    error_of,
    live_node,
    unique_path,
    upload,
)
from tests.integration.published_reads import current_manifest


def test_upload_init_and_complete(cp_api: Any, cp_stack: Any) -> None:
    data = os.urandom(6 * CHUNK + 12345)
    started, done = upload(cp_api, data)
    # Parts are whole multiples of the chunk size and at least S3's 5 MiB minimum.
    assert started["part_size"] == 5 * CHUNK and len(started["parts"]) == 2
    assert done.status_code == 200, done.body
    record = done.json_body
    assert record["size"] == len(data) and record["status"] == "ready"
    assert record["version"] == started["version"]
    fetched = cp_api.call("GET", f"/files/{started['file_id']}").json_body
    assert fetched == record
    obj = boto3.client("s3").get_object(Bucket=record["bucket"], Key=record["key"])
    assert obj["Body"].read() == data
    listed = cp_api.call("GET", "/files?limit=1000").json_body
    assert started["file_id"] in {f["file_id"] for f in listed["files"]}
    # A retried complete answers the same record instead of failing.
    again = cp_api.call("POST", f"/files/{started['file_id']}/complete", {"parts": []})
    assert again.status_code == 200 and again.json_body == record


def test_the_published_manifest_lists_chunk_hashes_for_edges(cp_api: Any, cp_stack: Any) -> None:
    data = os.urandom(2 * CHUNK + 1)
    started, done = upload(cp_api, data)
    record = done.json_body
    manifest = current_manifest(cp_stack.env["FSNODE_BUCKET"], started["file_id"])
    assert manifest is not None
    assert manifest.chunk_hashes() == chunk_hashes(data)
    assert (manifest.size, manifest.chunk_size, manifest.chunk_count) == (len(data), CHUNK, 3)
    assert manifest.origin.key == record["key"] and manifest.path == record["path"]
    assert (manifest.version, manifest.etag) == (record["version"], record["etag"])


def test_size_mismatch_leaves_nothing_visible(cp_api: Any, cp_stack: Any) -> None:
    data = os.urandom(CHUNK + 10)
    started, done = upload(cp_api, data, declared=CHUNK + 20)
    assert done.status_code == 400
    assert error_of(done)["code"] == "invalid_input"
    file_id = started["file_id"]
    assert cp_api.call("GET", f"/files/{file_id}").status_code == 404
    objects = boto3.client("s3").list_objects_v2(
        Bucket=cp_stack.env["FSNODE_BUCKET"], Prefix=f"files/{file_id}/"
    )
    assert objects.get("KeyCount", 0) == 0
    listed = cp_api.call("GET", "/files?limit=1000").json_body
    assert file_id not in {f["file_id"] for f in listed["files"]}


def test_upload_init_checks_chunk_hashes(cp_api: Any) -> None:
    for hashes in (["a" * 64], ["A" * 64, "b" * 64], ["zz"] * 2):
        answer = cp_api.call(
            "POST",
            "/files",
            {
                "path": unique_path(),
                "size": CHUNK + 1,
                "content_type": "video/mp4",
                "chunk_sha256": hashes,
            },
        )
        assert answer.status_code == 400, hashes
        assert error_of(answer)["details"]["field"] == "chunk_sha256"
    assert cp_api.call("POST", "/files", {"path": "x"}, key=False).status_code == 401


def test_share_redirects_to_a_live_edge(cp_api: Any, cp_stack: Any) -> None:
    node = live_node(cp_api, cp_stack)
    started, _ = upload(cp_api, os.urandom(1000))
    file_id = started["file_id"]
    shared = cp_api.call("POST", f"/files/{file_id}/share", {"ttl_seconds": 600})
    assert shared.status_code == 200, shared.body
    url = urlsplit(shared.json_body["share_url"])
    assert f"{url.scheme}://{url.netloc}" == "http://control.test"
    assert url.path == f"/s/{file_id}"
    query = dict(parse_qsl(url.query))
    # A file share names no version: it follows the file's current one.
    assert set(query) == {"exp", "kid", "sig"}
    assert int(query["exp"]) == shared.json_body["expires"]
    for method in ("GET", "HEAD"):
        answer = cp_api.call(method, f"{url.path}?{url.query}", key=False)
        assert answer.status_code == 307, answer.body
        location = urlsplit(answer.headers["Location"])
        nodes = {n["endpoint"] for n in cp_api.call("GET", "/nodes").json_body["nodes"]}
        assert f"{location.scheme}://{location.netloc}" in nodes
        # The redirect pins the version current now (unsigned), so a player that began
        # on it never gets another version's bytes, and carries that version's ticket.
        assert location.path == f"/f/{file_id}"
        pinned = dict(parse_qsl(location.query))
        ticket = pinned.pop("vt")
        assert pinned == {**query, "v": started["version"]}
        verifier = ShareVerifier.from_pems(node["share_public_keys"])
        assert open_ticket(verifier, ticket, file_id, started["version"]).size == 1000


def test_tampered_expired_and_unknown_shares(cp_api: Any, cp_stack: Any) -> None:
    live_node(cp_api, cp_stack)
    started, _ = upload(cp_api, os.urandom(100))
    file_id = started["file_id"]
    url = urlsplit(
        cp_api.call("POST", f"/files/{file_id}/share", {"ttl_seconds": 60}).json_body["share_url"]
    )
    query = dict(parse_qsl(url.query))
    tampered = {**query, "exp": str(int(query["exp"]) + 3600)}
    for bad in (tampered, {**query, "sig": _flip(query["sig"])}, {**query, "kid": "k9"}):
        answer = cp_api.call("GET", f"/s/{file_id}?{_qs(bad)}", key=False)
        assert answer.status_code == 403, bad
        assert error_of(answer)["code"] == "forbidden"
    active, keys = parse_keyring(cp_stack.keyring)
    signer = ShareSigner(active, keys[active])
    expired = signer.sign(SharePolicy(file_id, int(time.time()) - 5))
    answer = cp_api.call("GET", f"/s/{file_id}?{_qs(expired)}", key=False)
    assert answer.status_code == 403 and "expired" in error_of(answer)["message"]
    unknown = "f" * 32
    signed = signer.sign(SharePolicy(unknown, int(time.time()) + 60))
    answer = cp_api.call("GET", f"/s/{unknown}?{_qs(signed)}", key=False)
    assert answer.status_code == 404 and error_of(answer)["code"] == "not_found"
    pinned = {**signer.sign(SharePolicy(file_id, int(time.time()) + 60)), "v": "0" * 32}
    answer = cp_api.call("GET", f"/s/{file_id}?{_qs(pinned)}", key=False)
    assert answer.status_code == 410 and error_of(answer)["code"] == "gone"
    assert "replaced" in error_of(answer)["message"]
    answer = cp_api.call("GET", f"/s/..%2Fetc?{_qs(signed)}", key=False)
    assert answer.status_code == 400
    assert cp_api.call("GET", f"/files/{'Z' * 32}").status_code == 400


def test_share_ttl_is_capped(cp_api: Any) -> None:
    started, _ = upload(cp_api, os.urandom(10))
    for ttl in (0, 7 * 24 * 3600 + 1, "60"):
        answer = cp_api.call("POST", f"/files/{started['file_id']}/share", {"ttl_seconds": ttl})
        assert answer.status_code == 400, ttl
    assert cp_api.call("POST", f"/files/{'e' * 32}/share", {"ttl_seconds": 60}).status_code == 404


def _flip(sig: str) -> str:
    # Change the first character: the last one carries padding bits a decoder may ignore.
    return ("B" if sig[0] == "A" else "A") + sig[1:]


def _qs(query: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(query)


def test_json_error_shape_everywhere(cp_api: Any) -> None:
    answer = cp_api.call("DELETE", "/files", key=True)
    assert answer.status_code == 405
    assert json.loads(answer.body)["error"]["code"] == "method_not_allowed"
