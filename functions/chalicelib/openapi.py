"""The OpenAPI 3 description of every route: auth, request and answer schemas.

Hand-kept next to the validators it describes. Tests keep it true in both directions:
every Chalice route is here and every path here is a route, each documented auth is
enforced (a call without it answers 401), and schemathesis sends generated requests
(valid and invalid) and checks every answer against these schemas.
"""

from __future__ import annotations

from typing import Any

from chalicelib import edge_work, plans, uploads
from chalicelib.openapi_bodies import (
    CLUSTER_NODE,
    COMPLETE,
    FILE_PATCH,
    FOLDER_SHARE,
    HEARTBEAT,
    HEARTBEAT_WORK,
    IMPORT,
    KEY,
    LISTING,
    PART_PAGE,
    REGISTER,
    RENEW,
    SCHEMAS,
    SHARE,
    UPLOAD,
    WORK_REPORT,
)
from chalicelib.openapi_builders import (
    ID,
    MANAGED,
    NODE,
    PUBLIC,
    integer,
    nullable,
    obj,
    op,
    path_param,
    query,
    ref,
)

_NODE_ID = path_param("node_id")
_FILE_ID = path_param("file_id")
_LOCATION = {"Location": {"required": True, "schema": {"type": "string"}}}


def _folder_op(*, greedy: bool = False) -> dict[str, Any]:
    """A folder share's URL: the folder itself answers its listing; a file below it
    307s to an edge (same path form), or, with no edge, to the origin (a playlist is
    answered here)."""
    folder = op(
        "Open a folder share: the folder's listing, or 307 to an edge (placed by "
        "folder) keeping the path form",
        PUBLIC,
        LISTING,
        (400, 403, 404, 410, 503),
        params=[
            path_param("token", {"type": "string"}),
            *([path_param("proxy+", {"type": "string"})] if greedy else []),
            query("limit", integer(1, 1000)),
            query("next_token", {"type": "string"}),
        ],
    )
    folder["responses"]["200"]["content"].update(
        {
            media: {"schema": {"type": "string"}}
            for media in ("application/vnd.apple.mpegurl", "application/dash+xml")
        }
    )
    folder["responses"]["307"] = {
        "description": "to an edge, or a presigned origin URL",
        "headers": _LOCATION,
    }
    return folder


# The route table: one operation a line or a few, as the routes read (fmt: off).
# fmt: off
PATHS: dict[str, dict[str, Any]] = {
    "/nodes/register": {"post": op(
        "Register an edge node: the join token is in the body; ACM PCA signs its CSR",
        PUBLIC, ref("Registered"), (401, 403, 409, 503), body=REGISTER)},
    "/nodes/{node_id}/heartbeat": {"post": op(
        "Node heartbeat: record usage, refresh the TTL, answer status, keys and work",
        NODE, obj({"status": {"type": "string"}, "heartbeat_interval": integer(1),
                       "share_public_keys": ref("ShareKeys"),
                       "work": {"type": "array", "items": HEARTBEAT_WORK,
                                "maxItems": edge_work.MAX_WORK_PER_HEARTBEAT}},
                      {"public_name": {"type": "string"},
                       "public_certificate_serial": {"type": "string"}}),
        (403, 404, 410), body=HEARTBEAT, params=[_NODE_ID])},
    "/nodes/{node_id}/work/{work_id}": {"post": op(
        "Report a work item's outcome (the workflow waiting on it resumes)", NODE,
        obj({"work_id": ID, "node_id": ID, "recorded": {"type": "boolean"},
                 "error": nullable({"type": "string"})}),
        (403, 404, 410, 503), body=WORK_REPORT, params=[_NODE_ID, path_param("work_id")])},
    "/nodes/{node_id}/renew": {"post": op(
        "A new certificate for the node's recorded endpoint (register's CSR rules)", NODE,
        ref("Certificates"), (403, 410, 503), body=RENEW, params=[_NODE_ID])},
    "/nodes/{node_id}/drain": {"post": op(
        "Drain a node: placement stops choosing it; idempotent", MANAGED, ref("Node"),
        (400, 404, 409), params=[_NODE_ID])},
    "/nodes/{node_id}/public-certificate": {"get": op(
        "The fleet's public certificate for *.EDGE_DOMAIN and its key, for a placed node "
        "(404 without a domain)", NODE,
        obj({"name": {"type": "string"}, "serial": {"type": "string"},
                 "not_after": {"type": "string"}, "certificate": {"type": "string"},
                 "chain": {"type": "string"}, "private_key": {"type": "string"}}),
        (400, 403, 404, 410, 503), params=[_NODE_ID])},
    "/nodes": {"get": op("Every node, with its public name (null without a domain)", MANAGED,
                          obj({"edge_domain": nullable({"type": "string"}),
                                   "nodes": {"type": "array", "items": {"allOf": [
                                       ref("Node"), obj(
                                           {"public_name": nullable({"type": "string"})})]}}}),
                          ())},
    "/cluster": {"get": op(
        "Capacity summed over live nodes, and every node's load and status", MANAGED,
        obj({"total_bytes": integer(), "used_bytes": integer(),
                 "free_bytes": integer(), "live_nodes": integer(),
                 "nodes": {"type": "array", "items": CLUSTER_NODE}}), ())},
    "/files": {
        "post": op("Start a multipart upload (or a new version of file_id); the answer "
                    "lists the first page of part URLs", MANAGED,
                    obj({"file_id": ID, "version": ID, "upload_id": {"type": "string"},
                             "chunk_size": integer(1),
                             "part_size": integer(1), **PART_PAGE}),
                    (404, 409, 410, 503), body=UPLOAD),
        "get": op("A page of live files whose path starts with prefix, in path order "
                   "(a DynamoDB Query)", MANAGED,
                   obj({"prefix": {"type": "string"},
                            "files": {"type": "array", "items": ref("FileRecord")},
                            "next_token": nullable({"type": "string"})}),
                   (400,), params=[query("prefix", {"type": "string", "maxLength": 900}),
                                   query("limit", integer(1, 1000)),
                                   query("next_token", {"type": "string"})]),
    },
    "/files/import": {"post": op(
        "Register an object already in S3, pinned by version id or ETag", MANAGED,
        ref("FileRecord"), (403, 404, 409, 410, 503), body=IMPORT)},
    "/files/{file_id}": {
        "get": op("A file record", MANAGED, ref("FileRecord"), (400, 404),
                   params=[_FILE_ID]),
        "delete": op("Tombstone the file and free its path; collected after the grace "
                      "period", MANAGED,
                      obj({"file_id": ID, "version": ID,
                               "status": {"type": "string", "enum": ["deleting"]}}),
                      (400, 404, 409, 503), status=202, params=[_FILE_ID]),
        "patch": op("Set or clear the file's expiry (a new version keeps it)", MANAGED,
                     ref("FileRecord"), (404, 409, 410, 503), body=FILE_PATCH,
                     params=[_FILE_ID]),
    },
    "/files/{file_id}/parts": {"get": op(
        "A page of freshly signed part URLs of the file's upload in flight", MANAGED,
        obj({"file_id": ID, "version": ID, "upload_id": {"type": "string"},
                 **PART_PAGE}),
        (400, 404, 409, 503),
        params=[_FILE_ID, query("first", integer(1, uploads.MAX_PARTS)),
                query("limit", integer(1, uploads.PARTS_PAGE))])},
    "/files/{file_id}/upload": {"delete": op(
        "Cancel the file's upload in flight (the uploader's own, named by upload_id)",
        MANAGED, obj({"file_id": ID, "version": ID,
                          "status": {"type": "string", "enum": ["cancelled"]}}),
        (400, 404, 409, 503),
        params=[_FILE_ID, {**query("upload_id", {"type": "string", "minLength": 1,
                                                  "maxLength": 1024}), "required": True}])},
    "/files/{file_id}/complete": {"post": op(
        "Complete an upload: parts checked against the declared sizes and SHA-256s "
        "(a mismatch discards the upload), the version published in one step",
        MANAGED, ref("FileRecord"), (404, 409, 503), body=COMPLETE, params=[_FILE_ID])},
    "/files/{file_id}/plan": {"get": op(
        "Download plan (compact, paged): chunks of a byte range, each naming its replica "
        "edges by index into nodes, one S3 fallback URL for the object",
        MANAGED, obj({
            "file_id": ID, "version": ID, "size": integer(), "chunk_size": integer(1),
            "content_type": {"type": "string"}, "etag": {"type": "string"},
            "edge_query": {"type": "string"}, "expires": integer(),
            "nodes": {"type": "array", "items": obj(
                {"node_id": ID, "url": {"type": "string"}})},
            "s3_url": {"type": "string", "description": "presigned GET; send Range"},
            "chunks": {"type": "array", "items": {"allOf": [ref("Chunk"), obj({
                "replicas": {"type": "array", "items": integer(),
                             "description": "indexes into nodes, preferred first"}})]}},
            "next_offset": nullable({**integer(), "description": "continue the range "
                                      "from here (null: this page ends it)"})}),
        (400, 404, 410, 416, 503),
        params=[_FILE_ID, query("offset", integer()), query("length", integer(1)),
                query("limit", integer(1, plans.PLAN_PAGE))])},
    "/files/{file_id}/rehash": {"post": op(
        "Hash the current version from S3 again and replace recorded hashes that differ",
        MANAGED, obj({"file_id": ID, "version": ID,
                          "execution": nullable({"type": "string"})},
                         {"outcome": {"type": "object", "description": "the job's outcome, "
                                      "when it ran in the request (no state machine)"}}),
        (400, 404, 410, 503), status=202, params=[_FILE_ID])},
    "/files/{file_id}/share": {"post": op(
        "Mint an expiring share URL of the file, any current version (optionally "
        "not-before, client network); expires no later than the file",
        MANAGED, obj({"share_url": {"type": "string"}, "expires": integer()}),
        (404, 410, 503), body=SHARE, params=[_FILE_ID])},
    "/shares": {"post": op(
        "Mint a folder share: share_url ends in '/', a file below it is share_url plus "
        "its relative path", MANAGED,
        obj({"share_url": {"type": "string"}, "prefix": {"type": "string"},
                 "expires": integer()}), (503,), body=FOLDER_SHARE)},
    "/s/{file_id}": {method: op(
        "Open a file share: 307 to the chosen edge with the share's signed fields and "
        "v (the current version) and vt (its version ticket), or to the origin when no "
        "edge can take it",
        PUBLIC, None, (400, 403, 404, 410, 503), status=307, headers=_LOCATION,
        params=[_FILE_ID, *(query(name, {"type": "string"})
                            for name in ("v", "vt", "exp", "nbf", "ip", "kid", "sig"))])
        for method in ("get", "head")},
    "/t/{token}": {method: _folder_op() for method in ("get", "head")},
    "/t/{token}/{proxy+}": {method: _folder_op(greedy=True) for method in ("get", "head")},
    "/keys": {
        "post": op("Create an API key; the key is in this answer only (admin keys only)",
                    MANAGED, {"allOf": [ref("ApiKey"), obj({"key": {"type": "string"}})]},
                    (403, 503), body=KEY, status=201),
        "get": op("A page of API keys, never the keys themselves (admin keys only)", MANAGED,
                   obj({"keys": {"type": "array", "items": ref("ApiKey")},
                            "next_token": nullable(ID)}),
                   (400, 403, 503), params=[query("limit", integer(1, 1000)),
                                            query("next_token", ID)]),
    },
    "/keys/{key_id}": {"delete": op(
        "Revoke an API key (API Gateway may accept it from its authorizer cache for up to "
        "60 s more); idempotent (admin keys only)", MANAGED, ref("ApiKey"),
        (400, 403, 404, 503), params=[path_param("key_id")])},
    "/openapi.json": {"get": op("This document", PUBLIC, {"type": "object"}, ())},
    # The web page (chalicelib/web.py): HTML, its scripts and style, and its settings.
    "/": {"get": op("Upload page", PUBLIC, {"type": "string"}, (), media="text/html")},
    "/player": {"get": op("Player page for a share URL", PUBLIC, {"type": "string"}, (),
                           media="text/html")},
    "/web/app.js": {"get": op("Upload page script", PUBLIC, {"type": "string"}, (),
                               media="text/javascript")},
    "/web/player.js": {"get": op("Player page script", PUBLIC, {"type": "string"}, (),
                                  media="text/javascript")},
    "/web/folders.js": {"get": op("Upload page script: folders and folder shares", PUBLIC,
                                   {"type": "string"}, (), media="text/javascript")},
    "/web/hls.min.js": {"get": op("hls.js, the pinned version (web/package-lock.json)",
                                   PUBLIC, {"type": "string"}, (), media="text/javascript")},
    "/web/dash.mediaplayer.min.js": {"get": op(
        "dash.js (media player build), the pinned version (web/package-lock.json)",
        PUBLIC, {"type": "string"}, (), media="text/javascript")},
    "/web/style.css": {"get": op("Page style", PUBLIC, {"type": "string"}, (),
                                  media="text/css")},
    "/web/config.json": {"get": op(
        "What an uploader needs before POST /files", PUBLIC,
        obj({"chunk_size": integer(1), "part_size": integer(1)}), ())},
}
# fmt: on


def document() -> dict[str, Any]:
    """The OpenAPI document served at ``/openapi.json``."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "fsnode control plane",
            "version": "0.1.0",
            "description": "Errors are always {error: {code, message, details?}}.",
        },
        "paths": PATHS,
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key (fsnode keys create, or the "
                    "bootstrap admin key); /keys needs an admin key",
                },
                "nodeCredential": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the credential register answered",
                },
            },
            "schemas": SCHEMAS,
        },
    }
