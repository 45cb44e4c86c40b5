"""The API-key authorizer every management route uses, and the routes that manage keys
(a Blueprint).

API Gateway runs ``api_key_authorizer`` as its own Lambda function (a TOKEN authorizer
on the ``Authorization`` header) and caches its answer per key for
``AUTHORIZER_TTL_SECONDS``: a revoked key can still be accepted that long. The local
stack runs the same function, with the same cache (fsnode.localstack.api_gateway).
"""

from __future__ import annotations

from typing import Any

from chalice import AuthResponse, Blueprint, Response
from chalice.app import AuthRequest, AuthRoute
from fsnode_core.api_keys_store import ROLE_ADMIN
from fsnode_core.errors import Unauthorized

from chalicelib import api_keys
from chalicelib.http import json_body, json_routes
from chalicelib.observability import logger

bp = Blueprint(__name__)

AUTHORIZER_TTL_SECONDS = 60
# What a user key may call: every management route except the key routes. The cached
# policy is reused for every route a key calls, so it names all of them, not the one
# asked for. (tests/infra checks this list against the app's routes.)
USER_ROUTES = ["/files", "/files/*", "/shares", "/nodes", "/nodes/*", "/cluster"]


@bp.authorizer(name="api_key_authorizer", ttl_seconds=AUTHORIZER_TTL_SECONDS)
def api_key_authorizer(auth_request: AuthRequest) -> AuthResponse:
    try:
        principal = api_keys.authenticate(auth_request.token or "")
    except Unauthorized as exc:
        logger.info("api key refused", extra={"reason": exc.message})
        # API Gateway answers 401 only for this exact message; anything else is a 500.
        raise Exception("Unauthorized") from None
    routes: list[str | AuthRoute] = ["*"] if principal.role == ROLE_ADMIN else [*USER_ROUTES]
    return AuthResponse(
        routes=routes,
        principal_id=principal.key_id,
        context={"key_id": principal.key_id, "role": principal.role},
    )


route = json_routes(bp, authorizer=api_key_authorizer)


def _admin_request() -> Any:
    request = bp.current_request
    api_keys.require_admin(request.context)
    return request


@route("/keys", methods=["POST"])
def create_key() -> Response:
    return Response(body=api_keys.create(json_body(_admin_request())), status_code=201)


@route("/keys", methods=["GET"])
def list_keys() -> dict[str, Any]:
    return api_keys.list_page(_admin_request().query_params)


@route("/keys/{key_id}", methods=["DELETE"])
def revoke_key(key_id: str) -> dict[str, Any]:
    _admin_request()
    return api_keys.revoke(key_id)
