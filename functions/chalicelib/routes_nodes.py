"""Routes: node certificate renewal, draining, and the cluster view (a Blueprint)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice import Blueprint, IAMAuthorizer

from chalicelib import auth, nodes
from chalicelib.http import json_body, json_errors

bp = Blueprint(__name__)
iam = IAMAuthorizer()


def route(path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``bp.route`` with domain errors answered as JSON."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        return bp.route(path, **kwargs)(json_errors(view))

    return decorate


@route("/nodes/{node_id}/renew", methods=["POST"])
def renew_node(node_id: str) -> dict[str, Any]:
    request = bp.current_request
    return nodes.renew(node_id, request.headers, json_body(request))


@route("/nodes/{node_id}/drain", methods=["POST"], authorizer=iam)
def drain_node(node_id: str) -> dict[str, Any]:
    auth.require_api_key(bp.current_request.headers)
    return nodes.drain(node_id)


@route("/cluster", methods=["GET"], authorizer=iam)
def cluster_view() -> dict[str, Any]:
    auth.require_api_key(bp.current_request.headers)
    return nodes.cluster()
