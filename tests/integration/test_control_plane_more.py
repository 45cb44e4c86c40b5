"""Renew, drain, cluster, share policies, overwrite, listing and log hygiene (moto server)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3
from cryptography import x509
from fsnode_core.signing import ShareVerifier
from fsnode_core.version_tickets import open_ticket

from tests.integration.control_plane_helpers import (
    CHUNK,
    SERVED,
    error_of,
    ip_san,
    live_node,
    make_csr,
    node_auth,
    register,
    register_body,
    send_heartbeat,
    upload,
)
from tests.integration.published_reads import current_manifest


def test_renew_issues_a_new_certificate_for_the_recorded_endpoint(
    cp_api: Any, cp_stack: Any
) -> None:
    node = register(cp_api, cp_stack)
    path = f"/nodes/{node['node_id']}/renew"
    answer = cp_api.call(
        "POST", path, {"csr": make_csr([ip_san("127.0.0.1")])}, key=False, headers=node_auth(node)
    )
    assert answer.status_code == 200, answer.body
    cert = x509.load_pem_x509_certificate(answer.json_body["certificate"].encode())
    assert (
        cert.serial_number
        != x509.load_pem_x509_certificate(node["certificate"].encode()).serial_number
    )
    assert answer.json_body["root_certificate"].strip() == cp_stack.root_pem.strip()
    other_host = cp_api.call(
        "POST", path, {"csr": make_csr([ip_san("10.1.1.1")])}, key=False, headers=node_auth(node)
    )
    assert other_host.status_code == 400 and error_of(other_host)["code"] == "invalid_input"
    assert cp_api.call("POST", path, {}, key=False, headers=node_auth(node)).status_code == 400
    stranger = register(cp_api, cp_stack)
    assert (
        cp_api.call(
            "POST",
            path,
            {"csr": make_csr([ip_san("127.0.0.1")])},
            key=False,
            headers=node_auth(stranger),
        ).status_code
        == 401
    )


def test_drain_keeps_heartbeats_but_stops_placement(cp_api: Any, cp_stack: Any) -> None:
    node = live_node(cp_api, cp_stack)
    path = f"/nodes/{node['node_id']}/drain"
    assert cp_api.call("POST", path, key=False).status_code == 401
    answer = cp_api.call("POST", path)
    assert answer.status_code == 200 and answer.json_body["status"] == "draining", answer.body
    assert cp_api.call("POST", path).json_body["status"] == "draining"  # idempotent
    beat = send_heartbeat(cp_api, node["node_id"], node["credential"])
    assert beat.status_code == 200 and beat.json_body["status"] == "draining"
    started, _ = upload(cp_api, os.urandom(100))
    plan = cp_api.call("GET", f"/files/{started['file_id']}/plan").json_body
    assert node["node_id"] not in {n["node_id"] for n in plan["nodes"]}
    assert cp_api.call("POST", f"/nodes/{'c' * 32}/drain").status_code == 404


def test_cluster_sums_live_nodes(cp_api: Any, cp_stack: Any) -> None:
    node = live_node(cp_api, cp_stack)
    assert cp_api.call("GET", "/cluster", key=False).status_code == 401
    view = cp_api.call("GET", "/cluster").json_body
    live = [n for n in view["nodes"] if n["live"]]
    assert view["live_nodes"] == len(live) >= 1
    assert view["total_bytes"] == sum(n["capacity_bytes"] for n in live)
    assert view["used_bytes"] == sum(n["used_bytes"] for n in live)
    assert view["free_bytes"] == sum(n["free_bytes"] for n in live)
    mine = next(n for n in view["nodes"] if n["node_id"] == node["node_id"])
    assert set(mine) == {
        "node_id",
        "endpoint",
        "status",
        "used_bytes",
        "free_bytes",
        "capacity_bytes",
        "load",
        "last_heartbeat",
        "live",
    }


def _share(api: Any, file_id: str, **extra: Any) -> tuple[str, dict[str, str]]:
    answer = api.call("POST", f"/files/{file_id}/share", {"ttl_seconds": 600, **extra})
    assert answer.status_code == 200, answer.body
    url = urlsplit(answer.json_body["share_url"])
    return url.path, dict(parse_qsl(url.query))


def test_share_policies_ip_and_not_before(cp_api: Any, cp_stack: Any) -> None:
    live_node(cp_api, cp_stack)
    playlist, _ = upload(cp_api, os.urandom(100))
    # The Chalice test client's source address is 127.0.0.1.
    path, query = _share(cp_api, playlist["file_id"], ip="127.0.0.0/8")
    answer = cp_api.call("GET", f"{path}?{urlencode(query)}", key=False)
    assert answer.status_code == 307 and "ip=127.0.0.0%2F8" in answer.headers["Location"]
    path, query = _share(cp_api, playlist["file_id"], ip="10.0.0.0/8")
    assert cp_api.call("GET", f"{path}?{urlencode(query)}", key=False).status_code == 403
    widened = {**query, "ip": "0.0.0.0/0"}
    assert cp_api.call("GET", f"{path}?{urlencode(widened)}", key=False).status_code == 403
    path, query = _share(cp_api, playlist["file_id"], not_before=int(time.time()) + 300)
    assert cp_api.call("GET", f"{path}?{urlencode(query)}", key=False).status_code == 403
    for bad in ({"ip": "not-a-network"}, {"prefix": "other/"}, {"not_before": "soon"}):
        answer = cp_api.call(
            "POST", f"/files/{playlist['file_id']}/share", {"ttl_seconds": 60, **bad}
        )
        assert answer.status_code == 400, bad


def test_overwrite_switches_versions_atomically(cp_api: Any, cp_stack: Any) -> None:
    node = register(cp_api, cp_stack)
    old_data, new_data = os.urandom(CHUNK + 10), os.urandom(2 * CHUNK + 20)
    first, _ = upload(cp_api, old_data)
    file_id = first["file_id"]
    _, share = _share(cp_api, file_id)
    old = cp_api.call("GET", f"/s/{file_id}?{urlencode(share)}", key=False)
    # A second version: the first keeps serving until complete switches.
    second, done = upload(cp_api, new_data, file_id=file_id)
    assert done.status_code == 200, done.body
    assert second["file_id"] == file_id and second["version"] != first["version"]
    record = cp_api.call("GET", f"/files/{file_id}").json_body
    assert record["version"] == second["version"] and record["size"] == len(new_data)
    manifest = current_manifest(record["bucket"], file_id)
    assert manifest is not None
    assert manifest.version == second["version"] and manifest.chunk_count == 3
    # The share follows the file: the same link now opens the new version; a request
    # pinned to the old one (the earlier redirect's v) is told it was replaced.
    assert old.status_code == 307, old.body
    pinned = dict(parse_qsl(urlsplit(old.headers["Location"]).query))
    assert pinned["v"] == first["version"]
    # The redirect's version ticket: the version, signed with what an edge answers with.
    verifier = ShareVerifier.from_pems(node["share_public_keys"])
    ticket = open_ticket(verifier, pinned["vt"], file_id, first["version"])
    assert (ticket.size, ticket.chunk_size) == (len(old_data), CHUNK)
    assert ticket.issued <= time.time() and ticket.file_expires == 0
    assert cp_api.call("GET", f"/s/{file_id}?{urlencode(pinned)}", key=False).status_code == 410
    again = cp_api.call("GET", f"/s/{file_id}?{urlencode(share)}", key=False)
    assert again.status_code == 307, again.body
    assert dict(parse_qsl(urlsplit(again.headers["Location"]).query))["v"] == second["version"]
    obj = boto3.client("s3").get_object(Bucket=record["bucket"], Key=record["key"])
    assert obj["Body"].read() == new_data
    assert (
        cp_api.call(
            "POST",
            "/files",
            {
                "file_id": "d" * 32,
                "size": 1,
                "content_type": "t",
                "chunk_sha256": ["a" * 64],
                "part_sha256": ["a" * 64],
            },
        ).status_code
        == 404
    )
    assert cp_api.call("DELETE", f"/files/{file_id}").status_code == 202
    gone = cp_api.call(
        "POST",
        "/files",
        {
            "file_id": file_id,
            "size": 1,
            "content_type": "t",
            "chunk_sha256": ["a" * 64],
            "part_sha256": ["a" * 64],
        },
    )
    assert gone.status_code == 410


def test_overwrite_of_a_deleted_file_fails_at_complete(cp_api: Any) -> None:
    first, _ = upload(cp_api, os.urandom(100))
    file_id = first["file_id"]
    init = cp_api.call(
        "POST",
        "/files",
        {
            "file_id": file_id,
            "size": 5,
            "content_type": "t",
            "chunk_sha256": ["a" * 64],
            "part_sha256": [hashlib.sha256(b"12345").hexdigest()],
        },
    )
    assert init.status_code == 200, init.body
    assert cp_api.call("DELETE", f"/files/{file_id}").status_code == 202
    import requests

    part = init.json_body["parts"][0]
    put = requests.put(part["url"], data=b"12345", headers=part["headers"], timeout=10)
    done = cp_api.call(
        "POST",
        f"/files/{file_id}/complete",
        {"parts": [{"part_number": 1, "etag": put.headers["ETag"]}]},
    )
    assert done.status_code == 409, done.body
    assert cp_api.call("GET", f"/files/{file_id}").json_body["status"] == "deleting"


def test_listing_pages_are_never_empty_before_the_end(cp_api: Any) -> None:
    for _ in range(3):
        upload(cp_api, os.urandom(10))
    token, seen = None, []
    while True:
        page = cp_api.call("GET", "/files?limit=2" + (f"&next_token={token}" if token else ""))
        assert page.status_code == 200, page.body
        body = page.json_body
        if body["next_token"]:
            assert len(body["files"]) == 2
        seen += [f["file_id"] for f in body["files"]]
        token = body["next_token"]
        if not token:
            break
    assert len(seen) == len(set(seen)) >= 3
    assert all(
        f["status"] == "ready" for f in cp_api.call("GET", "/files?limit=1000").json_body["files"]
    )


def test_no_secret_reaches_the_logs_or_the_idempotency_table(cp_api: Any, cp_stack: Any) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    # The service logger at DEBUG, everything else at INFO (botocore's DEBUG wire dumps
    # are off in Lambda and would show any secret read).
    service, root = logging.getLogger("fsnode-control-plane"), logging.getLogger()
    old_levels = (service.level, root.level)
    for target, level in ((service, logging.DEBUG), (root, logging.INFO)):
        target.addHandler(handler)
        target.setLevel(level)
    try:
        key = secrets.token_hex(16)
        node = register(cp_api, cp_stack, idempotency_key=key)
        replay = register(
            cp_api, cp_stack, prove=False, idempotency_key=key, endpoint=SERVED[node["node_id"]].url
        )
        send_heartbeat(cp_api, node["node_id"], node["credential"])
        # Every other route that carries a secret: node credential, api key, share sig.
        started, _ = upload(cp_api, os.urandom(100))
        file_id = started["file_id"]
        assert (
            cp_api.call(
                "POST",
                f"/nodes/{node['node_id']}/renew",
                {"csr": make_csr([ip_san("127.0.0.1")])},
                key=False,
                headers=node_auth(node),
            ).status_code
            == 200
        )
        path, share = _share(cp_api, file_id)
        assert cp_api.call("GET", f"{path}?{urlencode(share)}", key=False).status_code == 307
        plan = cp_api.call("GET", f"/files/{file_id}/plan").json_body
        # Refused attempts log too: a wrong join token, a forged share, a stolen credential.
        bad = register_body(cp_stack, make_csr([ip_san("127.0.0.1")]))
        bad["join_token"] = cp_stack.join_token[::-1]
        assert cp_api.call("POST", "/nodes/register", bad, key=False).status_code == 401
        assert (
            cp_api.call("GET", f"{path}?{urlencode({**share, 'exp': '1'})}", key=False).status_code
            == 403
        )
        assert (
            cp_api.call(
                "POST",
                f"/nodes/{'0' * 32}/heartbeat",
                {"used_bytes": 1},
                key=False,
                headers=node_auth(node),
            ).status_code
            == 401
        )
    finally:
        for target, level in zip((service, root), old_levels, strict=True):
            target.removeHandler(handler)
            target.setLevel(level)
    assert replay["credential"] == node["credential"]
    logged = stream.getvalue()
    assert "node registered" in logged  # the capture did see the service logger
    for secret in (
        cp_stack.join_token,
        cp_stack.join_token[::-1],
        node["credential"],
        cp_stack.api_key,
        share["sig"],
        dict(parse_qsl(plan["edge_query"]))["sig"],
        # The keyring's seeds; its "active" entry names a key id ("k1"), which is public
        # (every share carries it) and short enough to turn up in any random string.
        *(seed for name, seed in json.loads(cp_stack.keyring).items() if name != "active"),
    ):
        assert secret not in logged
    items = boto3.client("dynamodb").scan(TableName=cp_stack.env["FSNODE_IDEMPOTENCY_TABLE"])[
        "Items"
    ]
    assert items and node["credential"] not in str(items)


def test_every_request_gets_its_own_correlation_id(cp_api: Any) -> None:
    from chalicelib.observability import logger

    ids = []
    for _ in range(2):
        assert cp_api.call("GET", "/cluster").status_code == 200
        ids.append(logger.get_correlation_id())
    assert all(ids) and ids[0] != ids[1]
