"""Routes: download plans, delete, expiry, import and hash repair (a Blueprint)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice import Blueprint, IAMAuthorizer, Response

from chalicelib import auth, files, plans, uploads
from chalicelib.http import json_body, json_errors

bp = Blueprint(__name__)
iam = IAMAuthorizer()


def route(path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``bp.route`` with domain errors answered as JSON."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        return bp.route(path, **kwargs)(json_errors(view))

    return decorate


def _managed() -> Any:
    request = bp.current_request
    auth.require_api_key(request.headers)
    return request


@route("/files/{file_id}/plan", methods=["GET"], authorizer=iam)
def plan_download(file_id: str) -> dict[str, Any]:
    request = _managed()
    return plans.plan(file_id, request.query_params, request.headers)


@route("/files/{file_id}", methods=["DELETE"], authorizer=iam)
def delete_file(file_id: str) -> Response:
    _managed()
    return Response(body=files.delete(file_id), status_code=202)


@route("/files/{file_id}", methods=["PATCH"], authorizer=iam)
def update_file(file_id: str) -> dict[str, Any]:
    return files.set_expiry(file_id, json_body(_managed()))


@route("/files/import", methods=["POST"], authorizer=iam)
def import_file() -> dict[str, Any]:
    return files.import_object(json_body(_managed()))


@route("/files/{file_id}/upload", methods=["DELETE"], authorizer=iam)
def cancel_upload(file_id: str) -> dict[str, Any]:
    return uploads.cancel(file_id, _managed().query_params)


@route("/files/{file_id}/rehash", methods=["POST"], authorizer=iam)
def rehash_file(file_id: str) -> Response:
    _managed()
    return Response(body=files.rehash(file_id), status_code=202)
