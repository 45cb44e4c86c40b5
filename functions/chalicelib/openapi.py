"""A hand-kept OpenAPI 3 description of the routes (a test checks it covers every route)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}


def _op(summary: str, security: str | None, *, body: bool = False,
        ok: str = "200") -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {ok: {"description": "success"}, "default": _ERROR},
    }
    if security:
        op["security"] = [{security: []}]
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"type": "object"}}}}
    return op


_PATHS: dict[str, dict[str, Any]] = {
    "/nodes/register": {"post": _op("Register an edge node (join token in body)", None,
                                    body=True)},
    "/nodes/{node_id}/heartbeat": {"post": _op("Node heartbeat; answers pending work", "node",
                                               body=True)},
    "/nodes/{node_id}/files/{file_id}": {"get": _op("File manifest for an edge", "node")},
    "/nodes/{node_id}/work/{work_id}": {"post": _op("Report a work item's outcome", "node",
                                                    body=True)},
    "/nodes": {"get": _op("List nodes", "apiKey")},
    "/files": {"post": _op("Start a multipart upload", "apiKey", body=True),
               "get": _op("List files (next_token pages)", "apiKey")},
    "/files/{file_id}/complete": {"post": _op("Complete an upload", "apiKey", body=True)},
    "/files/{file_id}": {"get": _op("A file record", "apiKey"),
                         "delete": _op("Delete a file (starts GC)", "apiKey", ok="202")},
    "/files/{file_id}/share": {"post": _op("Mint a share URL", "apiKey", body=True)},
    "/s/{file_id}": {"get": _op("Redirect a share URL to an edge", None, ok="307")},
    "/openapi.json": {"get": _op("This document", None)},
    "/files/{file_id}/plan": {"get": _op("Download plan (offset, length query)", "apiKey")},
    "/files/import": {"post": _op("Register an object already in S3", "apiKey", body=True)},
    "/nodes/{node_id}/files/{file_id}/chunks/{index}": {
        "put": _op("Record a chunk's SHA-256 (first fetch)", "node", body=True)},
    "/nodes/{node_id}/renew": {"post": _op("Renew a node certificate", "node", body=True)},
    "/nodes/{node_id}/drain": {"post": _op("Drain a node", "apiKey")},
    "/cluster": {"get": _op("Cluster capacity and per-node load", "apiKey")},
    # The web page (chalicelib/web.py): HTML, its scripts and style, and its settings.
    "/": {"get": _op("Upload page (HTML)", None)},
    "/player": {"get": _op("Player page for a share URL (HTML)", None)},
    "/web/app.js": {"get": _op("Upload page script", None)},
    "/web/player.js": {"get": _op("Player page script", None)},
    "/web/style.css": {"get": _op("Page style", None)},
    "/web/config.json": {"get": _op("Upload settings: chunk_size, part_size", None)},
}


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "fsnode control plane", "version": "0.1.0"},
        "paths": _PATHS,
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "node": {"type": "http", "scheme": "bearer"},
            },
            "responses": {"Error": {"description": "error", "content": {"application/json": {
                "schema": {"type": "object", "properties": {"error": {"type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                   "details": {"type": "object"}}}}}}}}},
        },
    }
