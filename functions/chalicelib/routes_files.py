"""Routes: download plans, delete, expiry, import and hash repair (a Blueprint)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice import Blueprint, Response

from chalicelib import files, plans, uploads
from chalicelib.http import json_body, json_errors
from chalicelib.routes_keys import api_key_authorizer as managed

bp = Blueprint(__name__)


def route(path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``bp.route`` with domain errors answered as JSON."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        return bp.route(path, **kwargs)(json_errors(view))

    return decorate


@route("/files/{file_id}/plan", methods=["GET"], authorizer=managed)
def plan_download(file_id: str) -> dict[str, Any]:
    request = bp.current_request
    return plans.plan(file_id, request.query_params, request.headers)


@route("/files/{file_id}", methods=["DELETE"], authorizer=managed)
def delete_file(file_id: str) -> Response:
    return Response(body=files.delete(file_id), status_code=202)


@route("/files/{file_id}", methods=["PATCH"], authorizer=managed)
def update_file(file_id: str) -> dict[str, Any]:
    return files.set_expiry(file_id, json_body(bp.current_request))


@route("/files/import", methods=["POST"], authorizer=managed)
def import_file() -> dict[str, Any]:
    return files.import_object(json_body(bp.current_request))


@route("/files/{file_id}/upload", methods=["DELETE"], authorizer=managed)
def cancel_upload(file_id: str) -> dict[str, Any]:
    return uploads.cancel(file_id, bp.current_request.query_params)


@route("/files/{file_id}/rehash", methods=["POST"], authorizer=managed)
def rehash_file(file_id: str) -> Response:
    return Response(body=files.rehash(file_id), status_code=202)
