"""Routes of the edge nodes: register, heartbeat, work reports, certificate renewal and the
public certificate (node credentials), and the fleet's views and draining (API keys)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib import nodes, replication
from chalicelib.http import json_body, json_routes
from chalicelib.routes_keys import api_key_authorizer as managed

bp = Blueprint(__name__)
route = json_routes(bp)


@route("/nodes/register", methods=["POST"])
def register_node() -> dict[str, Any]:
    return nodes.register(json_body(bp.current_request))


@route("/nodes/{node_id}/heartbeat", methods=["POST"])
def node_heartbeat(node_id: str) -> dict[str, Any]:
    request = bp.current_request
    return nodes.heartbeat(node_id, request.headers, json_body(request))


@route("/nodes/{node_id}/work/{work_id}", methods=["POST"])
def node_work_report(node_id: str, work_id: str) -> dict[str, Any]:
    request = bp.current_request
    return replication.report(node_id, work_id, request.headers, json_body(request))


@route("/nodes/{node_id}/renew", methods=["POST"])
def renew_node(node_id: str) -> dict[str, Any]:
    request = bp.current_request
    return nodes.renew(node_id, request.headers, json_body(request))


@route("/nodes/{node_id}/public-certificate", methods=["GET"])
def node_public_certificate(node_id: str) -> dict[str, Any]:
    return nodes.public_certificate_for(node_id, bp.current_request.headers)


@route("/nodes", methods=["GET"], authorizer=managed)
def list_nodes() -> dict[str, Any]:
    return nodes.list_nodes()


@route("/nodes/{node_id}/drain", methods=["POST"], authorizer=managed)
def drain_node(node_id: str) -> dict[str, Any]:
    return nodes.drain(node_id)


@route("/cluster", methods=["GET"], authorizer=managed)
def cluster_view() -> dict[str, Any]:
    return nodes.cluster()
