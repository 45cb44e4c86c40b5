"""Routes: node certificate renewal, draining, and the cluster view (a Blueprint)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice import Blueprint

from chalicelib import nodes
from chalicelib.http import json_body, json_errors
from chalicelib.routes_keys import api_key_authorizer as managed

bp = Blueprint(__name__)


def route(path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``bp.route`` with domain errors answered as JSON."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        return bp.route(path, **kwargs)(json_errors(view))

    return decorate


@route("/nodes/{node_id}/renew", methods=["POST"])
def renew_node(node_id: str) -> dict[str, Any]:
    request = bp.current_request
    return nodes.renew(node_id, request.headers, json_body(request))


@route("/nodes/{node_id}/public-certificate", methods=["GET"])
def node_public_certificate(node_id: str) -> dict[str, Any]:
    return nodes.public_certificate_for(node_id, bp.current_request.headers)


@route("/nodes/{node_id}/drain", methods=["POST"], authorizer=managed)
def drain_node(node_id: str) -> dict[str, Any]:
    return nodes.drain(node_id)


@route("/cluster", methods=["GET"], authorizer=managed)
def cluster_view() -> dict[str, Any]:
    return nodes.cluster()
