"""Routes of files (API keys): uploads (start, part URLs, complete, cancel), records and
listing, download plans, delete, expiry, import and hash repair."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib import files, plans, upload_complete, uploads
from chalicelib.http import json_body, json_routes
from chalicelib.routes_keys import api_key_authorizer as managed

bp = Blueprint(__name__)
route = json_routes(bp, authorizer=managed)


@route("/files", methods=["POST"])
def start_upload() -> dict[str, Any]:
    # It declares every chunk's and part's SHA-256: a larger body than other routes take.
    return uploads.start(json_body(bp.current_request, limit=uploads.MAX_INIT_BODY))


@route("/files/{file_id}/parts", methods=["GET"])
def upload_part_urls(file_id: str) -> dict[str, Any]:
    return uploads.part_urls(file_id, bp.current_request.query_params)


@route("/files", methods=["GET"])
def list_files() -> dict[str, Any]:
    return uploads.list_page(bp.current_request.query_params)


@route("/files/{file_id}/complete", methods=["POST"])
def complete_upload(file_id: str) -> dict[str, Any]:
    return upload_complete.complete(file_id, json_body(bp.current_request))


@route("/files/{file_id}", methods=["GET"])
def get_file(file_id: str) -> dict[str, Any]:
    return uploads.get(file_id)


@route("/files/{file_id}/plan", methods=["GET"])
def plan_download(file_id: str) -> dict[str, Any]:
    request = bp.current_request
    return plans.plan(file_id, request.query_params, request.headers)


@route("/files/{file_id}", methods=["DELETE"])
def delete_file(file_id: str) -> Response:
    return Response(body=files.delete(file_id), status_code=202)


@route("/files/{file_id}", methods=["PATCH"])
def update_file(file_id: str) -> dict[str, Any]:
    return files.set_expiry(file_id, json_body(bp.current_request))


@route("/files/import", methods=["POST"])
def import_file() -> dict[str, Any]:
    return files.import_object(json_body(bp.current_request))


@route("/files/{file_id}/upload", methods=["DELETE"])
def cancel_upload(file_id: str) -> dict[str, Any]:
    return uploads.cancel(file_id, bp.current_request.query_params)


@route("/files/{file_id}/rehash", methods=["POST"])
def rehash_file(file_id: str) -> Response:
    return Response(body=files.rehash(file_id), status_code=202)
