"""Routes of shares: minting a file's or a folder's share URL (API keys), and opening
them (``/s/`` redirects to an edge, ``/t/`` serves a folder's listing and files), which
need no key: the URL's signature is the credential."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib import folder_shares, shares
from chalicelib.http import json_body, json_routes
from chalicelib.routes_keys import api_key_authorizer as managed

bp = Blueprint(__name__)
route = json_routes(bp)


@route("/files/{file_id}/share", methods=["POST"], authorizer=managed)
def share_file(file_id: str) -> dict[str, Any]:
    request = bp.current_request
    base = shares.base_url(request.headers, request.context)
    return shares.mint(file_id, json_body(request), base)


@route("/shares", methods=["POST"], authorizer=managed)
def share_folder() -> dict[str, Any]:
    request = bp.current_request
    return shares.mint_folder(json_body(request), shares.base_url(request.headers, request.context))


@route("/s/{file_id}", methods=["GET", "HEAD"])
def open_share(file_id: str) -> Response:
    request = bp.current_request
    location = shares.open_file_share(
        file_id,
        shares.query_pairs(request.query_params),
        request.headers,
        shares.source_ip(request.context),
    )
    return Response(
        body="",
        status_code=307,
        headers={"Location": location, "Cache-Control": "private, no-store"},
    )


@route("/t/{token}", methods=["GET", "HEAD"])
def open_folder_root(token: str) -> Response:
    return _open_folder(token)


# API Gateway's greedy path; Chalice passes it as the keyword "proxy+" (the path itself
# is read from the request context, raw, so nothing is decoded twice).
@route("/t/{token}/{proxy+}", methods=["GET", "HEAD"])
def open_folder(token: str, **_path: str) -> Response:
    return _open_folder(token)


def _open_folder(token: str) -> Response:
    request = bp.current_request
    raw = folder_shares.raw_path_after(str(request.context.get("path") or ""), token)
    status, headers, body = folder_shares.open_folder(
        token, raw, request.query_params or {}, request.headers, shares.source_ip(request.context)
    )
    answer_headers: dict[str, str | list[str]] = {**headers}
    return Response(
        body="" if request.method == "HEAD" else body, status_code=status, headers=answer_headers
    )
