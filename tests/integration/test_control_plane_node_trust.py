"""Node trust (issue 17.1): a node is placed only once its endpoint serves the
certificate issued to it, a live node's endpoint is nobody else's, the CA issues only
inside the fleet's namespace (dead and drained nodes: test_control_plane_node_retirement)."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from fsnode_core import placement
from fsnode_core.models import NODE_ACTIVE, NodeRecord
from fsnode_core.nodes_store import NodeRegistry

from tests.integration.control_plane_helpers import (
    _KEY_2048,
    SERVED,
    error_of,
    ip_san,
    make_csr,
    register,
    register_body,
    send_heartbeat,
    upload,
)
from tests.integration.served_endpoints import ServedEndpoint

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _register_at(
    api: Any, stack: Any, endpoint: str, names: list[x509.GeneralName], **extra: Any
) -> Any:
    return api.call(
        "POST",
        "/nodes/register",
        register_body(stack, make_csr(names, key=KEY), endpoint, **extra),
        key=False,
    )


def _registry(stack: Any) -> NodeRegistry:
    return NodeRegistry(stack.env["FSNODE_NODES_TABLE"], boto3.client("dynamodb"))


def test_a_live_nodes_endpoint_cannot_be_claimed(cp_api: Any, cp_stack: Any) -> None:
    live = register(cp_api, cp_stack)
    claim = _register_at(cp_api, cp_stack, SERVED[live["node_id"]].url, [ip_san("127.0.0.1")])
    assert claim.status_code == 409, claim.body
    assert error_of(claim)["code"] == "conflict"
    assert "held by a live node" in error_of(claim)["message"]


@pytest.mark.parametrize(
    ("endpoint", "san"),
    [
        ("https://www.example.com:443", x509.DNSName("www.example.com")),
        ("https://8.8.8.8:443", ip_san("8.8.8.8")),
        ("https://[::1]:443", ip_san("::1")),
    ],
    ids=["dns-outside", "public-address", "ipv6-outside"],
)
def test_the_ca_issues_only_inside_the_fleets_namespace(
    cp_api: Any, cp_stack: Any, endpoint: str, san: Any
) -> None:
    before = len(_registry(cp_stack).list_nodes())
    answer = _register_at(cp_api, cp_stack, endpoint, [san])
    assert answer.status_code == 403, answer.body
    assert len(_registry(cp_stack).list_nodes()) == before
    error = error_of(answer)
    assert error["code"] == "forbidden" and "namespace" in error["message"]
    assert error["details"]["field"] == "endpoint"


def test_the_issuer_itself_refuses_a_name_outside_the_namespace(cp_env: Any) -> None:
    """Whoever invokes issue_certificate, the CA signs nothing outside the namespace."""
    from chalicelib import issuer
    from chalicelib.settings import get_settings
    from fsnode_core.errors import Forbidden

    get_settings.cache_clear()
    with pytest.raises(Forbidden):
        issuer.issue(
            {
                "endpoint": "https://8.8.8.8:443",
                "validity_days": 1,
                "csr": make_csr([ip_san("8.8.8.8")], key=KEY),
            }
        )


def test_a_node_is_placed_only_after_its_endpoint_shows_its_certificate(
    cp_api: Any, cp_stack: Any
) -> None:
    served = ServedEndpoint()
    answer = _register_at(cp_api, cp_stack, served.url, [ip_san("127.0.0.1")])
    assert answer.status_code == 200, answer.body
    node = answer.json_body
    # Nothing listens with TLS yet: pending, no work.
    beat = send_heartbeat(cp_api, node["node_id"], node["credential"])
    assert beat.status_code == 200 and beat.json_body["status"] == "pending"
    assert beat.json_body["work"] == []
    # A share whose first choice would be this node goes elsewhere while it is pending.
    registry = _registry(cp_stack)
    pending = registry.get(node["node_id"])
    assert pending is not None
    key = _first_choice_key(cp_api, registry, pending)
    shared = cp_api.call("POST", f"/files/{key}/share", {"ttl_seconds": 600}).json_body
    url = urlsplit(shared["share_url"])
    opened = cp_api.call("GET", f"{url.path}?{url.query}", key=False)
    assert opened.status_code == 307, opened.body
    assert not opened.headers["Location"].startswith(served.url)
    # Another node's certificate at the endpoint proves nothing.
    other = register(cp_api, cp_stack)
    served.serve(_KEY_2048, other["certificate"], other["certificate_chain"])
    beat = send_heartbeat(cp_api, node["node_id"], node["credential"])
    assert beat.json_body["status"] == "pending"
    # Its own does.
    served.serve(KEY, node["certificate"], node["certificate_chain"])
    beat = send_heartbeat(cp_api, node["node_id"], node["credential"])
    assert beat.json_body["status"] == "active"
    listed = {n["node_id"]: n for n in cp_api.call("GET", "/nodes").json_body["nodes"]}
    assert listed[node["node_id"]]["status"] == "active"
    served.close()


def _first_choice_key(api: Any, registry: NodeRegistry, pending: NodeRecord) -> str:
    """A file (uploaded here) that placement would send to ``pending`` first, were it
    active: the redirect elsewhere then shows it is left out because it is pending."""
    as_if_placed = dataclasses.replace(pending, status=NODE_ACTIVE, last_heartbeat=int(time.time()))
    others = [node for node in registry.list_nodes() if node.node_id != pending.node_id]
    for _ in range(300):
        file_id = upload(api, os.urandom(10))[0]["file_id"]
        chosen = placement.choose(
            file_id, placement.eligible([*others, as_if_placed], time.time(), 30), 1
        )
        if chosen[0].node_id == pending.node_id:
            return str(file_id)
    raise AssertionError("no file ranks the pending node first")


def test_a_restarted_edge_takes_its_endpoint_over_by_proving_it(cp_api: Any, cp_stack: Any) -> None:
    """A node that lost its state registers again at its endpoint once the old record
    is no longer live; proving the endpoint retires the old record."""
    old = register(cp_api, cp_stack)
    served = SERVED[old["node_id"]]
    registry = _registry(cp_stack)
    registry.mark_dead(old["node_id"], registry.get(old["node_id"]).last_heartbeat)  # type: ignore[union-attr]
    answer = _register_at(cp_api, cp_stack, served.url, [ip_san("127.0.0.1")])
    assert answer.status_code == 200, answer.body
    new = answer.json_body
    served.serve(KEY, new["certificate"], new["certificate_chain"])
    assert send_heartbeat(cp_api, new["node_id"], new["credential"]).json_body["status"] == "active"
