"""Dead and drained nodes on the node routes (issue 17.1), each called with the node's
own credential as an edge calls them.

A retired node (dead, or drained) is refused on every node route with 410 `gone`
(`details.reason` `node_dead` / `node_drained`). A draining node beats, renews and
keeps its public certificate, but is handed no work and reports none, and its
`hot_files` start nothing: no word of a node leaving changes what others serve.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.ids import new_sortable_id
from fsnode_core.models import NODE_DEAD, NODE_DRAINED, NODE_DRAINING, WorkItem
from fsnode_core.nodes_store import NodeRegistry

from tests.integration.control_plane_helpers import (
    error_of,
    ip_san,
    make_csr,
    node_auth,
    register,
    register_body,
    send_heartbeat,
)

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
BUSY = 2.0  # a draining node with streams still open
IDLE = 0.0


def _registry(stack: Any) -> NodeRegistry:
    return NodeRegistry(stack.env["FSNODE_NODES_TABLE"], boto3.client("dynamodb"))


def _catalog(stack: Any) -> ChunkCatalog:
    return ChunkCatalog(stack.env["FSNODE_CHUNKS_TABLE"], boto3.client("dynamodb"))


def _beat(api: Any, node: dict[str, Any], load: float, hot: list[str] | None = None) -> Any:
    body = {"used_bytes": 1, "free_bytes": 1, "capacity_bytes": 2, "load": load}
    return api.call(
        "POST",
        f"/nodes/{node['node_id']}/heartbeat",
        {**body, "hot_files": hot or []},
        key=False,
        headers=node_auth(node),
    )


def _call_route(api: Any, node: dict[str, Any], route: str, work_id: str = "0" * 32) -> Any:
    """One node route, called with the node's own credential."""
    base = f"/nodes/{node['node_id']}"
    if route == "heartbeat":
        return _beat(api, node, BUSY)
    if route == "public-certificate":
        return api.call("GET", f"{base}/public-certificate", key=False, headers=node_auth(node))
    path, body = {
        "work": (f"{base}/work/{work_id}", {"ok": True, "sha256": ["0" * 64]}),
        "renew": (f"{base}/renew", {"csr": make_csr([ip_san("127.0.0.1")], key=KEY)}),
    }[route]
    return api.call("POST", path, body, key=False, headers=node_auth(node))


def _queue_warm(stack: Any, node_id: str) -> WorkItem:
    now = int(time.time())
    work = WorkItem(
        node_id=node_id,
        work_id=new_sortable_id(now),
        kind="warm",
        file_id="f" * 32,
        version="v" * 32,
        chunk_index=0,
        task_token="t",
        created_at=now,
        expires_at=now + 600,
        chunks=[0],
    )
    _catalog(stack).put_work(work)
    return work


def _drain(api: Any, node: dict[str, Any]) -> None:
    answer = api.call("POST", f"/nodes/{node['node_id']}/drain")
    assert answer.status_code == 200 and answer.json_body["status"] == NODE_DRAINING, answer.body


def _retire(api: Any, stack: Any, node: dict[str, Any], how: str) -> None:
    if how == NODE_DEAD:  # as prune declares a silent node
        registry = _registry(stack)
        record = registry.get(node["node_id"])
        assert record is not None and registry.mark_dead(node["node_id"], record.last_heartbeat)
    else:  # drained by the operator, and the drain done: nothing in flight any more
        _drain(api, node)
        assert _beat(api, node, IDLE).json_body["status"] == NODE_DRAINED
    assert _registry(stack).get(node["node_id"]).status == how  # type: ignore[union-attr]


ROUTES = ["heartbeat", "work", "renew", "public-certificate"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("how", [NODE_DEAD, NODE_DRAINED])
def test_a_retired_node_is_refused_on_every_node_route(
    cp_api: Any, cp_stack: Any, route: str, how: str
) -> None:
    node = register(cp_api, cp_stack)
    work = _queue_warm(cp_stack, node["node_id"])  # it had work queued: still refused
    _retire(cp_api, cp_stack, node, how)
    answer = _call_route(cp_api, node, route, work.work_id)
    assert answer.status_code == 410, answer.body
    error = error_of(answer)
    assert error["code"] == "gone"
    assert error["details"] == {
        "node_id": node["node_id"],
        "node_status": how,
        "reason": f"node_{how}",
    }
    assert ("register again" if how == NODE_DEAD else "out of the fleet") in error["message"]


def test_every_node_route_is_covered(cp_api: Any) -> None:
    """The routes above are every route a node credential opens (as the served OpenAPI
    document says), and each documents its 410."""
    spec = cp_api.call("GET", "/openapi.json", key=False).json_body
    node_routes = {
        "work" if "{work_id}" in path else path.rsplit("/", 1)[1]: "410" in operation["responses"]
        for path, operations in spec["paths"].items()
        for operation in operations.values()
        if operation["security"] == [{"nodeCredential": []}]
    }
    assert node_routes == dict.fromkeys(ROUTES, True)


def test_a_draining_node_beats_and_renews_but_takes_and_reports_no_work(
    cp_api: Any, cp_stack: Any
) -> None:
    node = register(cp_api, cp_stack)
    queued = _queue_warm(cp_stack, node["node_id"])
    _drain(cp_api, node)
    beat = _beat(cp_api, node, BUSY, hot=["a" * 32])
    assert beat.status_code == 200, beat.body
    assert beat.json_body["status"] == NODE_DRAINING
    assert beat.json_body["work"] == []  # queued before the drain: not handed out
    record = _registry(cp_stack).get(node["node_id"])
    assert record is not None and record.hot_files == []  # its word starts nothing
    assert record.last_heartbeat > 0 and record.load == BUSY
    # Its reports (a chunk's hash, an eviction done) change nothing: 403.
    report = _call_route(cp_api, node, "work", queued.work_id)
    assert report.status_code == 403, report.body
    error = error_of(report)
    assert error["code"] == "forbidden" and "draining" in error["message"]
    assert error["details"]["node_status"] == NODE_DRAINING
    # It keeps a valid certificate while it finishes its streams.
    renewed = _call_route(cp_api, node, "renew")
    assert renewed.status_code == 200, renewed.body
    assert "BEGIN CERTIFICATE" in renewed.json_body["certificate"]
    # The public certificate route lets it through (no domain here: 404, not 403/410).
    public = _call_route(cp_api, node, "public-certificate")
    assert public.status_code == 404 and error_of(public)["code"] == "not_found"


def test_a_drain_completes_once_nothing_is_in_flight(cp_api: Any, cp_stack: Any) -> None:
    node = register(cp_api, cp_stack)
    _drain(cp_api, node)
    # Streams still open: draining, however many beats.
    for _ in range(2):
        assert _beat(cp_api, node, BUSY).json_body["status"] == NODE_DRAINING
    done = _beat(cp_api, node, IDLE)
    assert done.status_code == 200, done.body
    assert done.json_body["status"] == NODE_DRAINED and done.json_body["work"] == []
    listed = {n["node_id"]: n for n in cp_api.call("GET", "/nodes").json_body["nodes"]}
    assert listed[node["node_id"]]["status"] == NODE_DRAINED
    cluster = cp_api.call("GET", "/cluster").json_body
    assert node["node_id"] not in {n["node_id"] for n in cluster["nodes"]}
    # Draining it again answers what it is; it never comes back by a beat.
    again = cp_api.call("POST", f"/nodes/{node['node_id']}/drain")
    assert again.status_code == 200 and again.json_body["status"] == NODE_DRAINED
    assert send_heartbeat(cp_api, node["node_id"], node["credential"]).status_code == 410
    # Prune never turns it into a dead node (it stays drained until its item expires).
    registry = _registry(cp_stack)
    record = registry.get(node["node_id"])
    assert record is not None
    assert not registry.mark_dead(node["node_id"], record.last_heartbeat)


def test_a_drained_nodes_endpoint_is_free_for_a_new_node(cp_api: Any, cp_stack: Any) -> None:
    node = register(cp_api, cp_stack)
    endpoint = _registry(cp_stack).get(node["node_id"]).endpoint  # type: ignore[union-attr]
    _retire(cp_api, cp_stack, node, NODE_DRAINED)
    answer = cp_api.call(
        "POST",
        "/nodes/register",
        register_body(cp_stack, make_csr([ip_san("127.0.0.1")], key=KEY), endpoint),
        key=False,
    )
    assert answer.status_code == 200, answer.body
    assert answer.json_body["node_id"] != node["node_id"]
