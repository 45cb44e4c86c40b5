"""The OpenAPI 3 description of every route: auth, request and answer schemas.

Hand-kept next to the validators it describes. Tests keep it true in both directions:
every Chalice route is here and every path here is a route, each documented auth is
enforced (a call without it answers 401), and schemathesis sends generated requests
(valid and invalid) and checks every answer against these schemas.
"""

from __future__ import annotations

from typing import Any

from chalicelib import edge_work, pki, plans, replication, shares, uploads, validate

# Security requirement lists. Management routes take an API key (``Authorization: Bearer
# KEY``), checked by the API-key authorizer before the route runs, in AWS and locally.
MANAGED: list[dict[str, list[str]]] = [{"apiKey": []}]
NODE: list[dict[str, list[str]]] = [{"nodeCredential": []}]
PUBLIC: list[dict[str, list[str]]] = []

ID_PATTERN = "^[0-9a-f]{32}$"
SHA256_PATTERN = "^[0-9a-f]{64}$"
MAX_INT = 2**62


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(max_len: int = 1024, **extra: Any) -> dict[str, Any]:
    """What ``validate.string`` accepts."""
    return {"type": "string", "minLength": 1, "maxLength": max_len, **extra}


def _integer(low: int = 0, high: int = MAX_INT) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _object(
    required: dict[str, Any],
    optional: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An object schema; unknown fields are ignored by the app, so they are allowed."""
    schema: dict[str, Any] = {"type": "object", "properties": {**required, **(optional or {})}}
    if required:
        schema["required"] = list(required)
    return schema


_ID = {"type": "string", "pattern": ID_PATTERN}
_SHA256 = {"type": "string", "pattern": SHA256_PATTERN}


def _pattern(compiled: Any) -> str:
    """A validator's regular expression as an anchored JSON Schema pattern."""
    return f"^(?:{compiled.pattern})$"


# The schemas: each field beside its neighbours, as the wire format reads (fmt: off).
# fmt: off
SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _object({"error": _object(
        {"code": {"type": "string"}, "message": {"type": "string"}},
        {"details": {"type": "object"}})}),
    "FileRecord": _object({
        "file_id": _ID, "version": _ID,
        "path": {"type": "string", "description": "the file's identity among live files"},
        "name": {"type": "string", "description": "the path's last segment"},
        "chunks_sha256": _nullable({**_SHA256, "description": "SHA-256 over the raw chunk "
                                    "digests (null: an import not hashed yet)"}),
        "size": _integer(), "content_type": {"type": "string"}, "etag": {"type": "string"},
        "last_modified": _integer(), "chunk_size": _integer(1), "bucket": {"type": "string"},
        "key": {"type": "string"},
        "status": {"type": "string", "enum": ["ready", "deleting", "deleted"]},
        "created_at": _integer(), "updated_at": _integer(),
        "source": {"type": "string", "enum": ["upload", "import"]},
        "version_id": _nullable({"type": "string"}),
        "expires_at": _nullable({**_integer(), "description": "unix seconds after which the "
                                 "file is collected (null: kept until deleted)"}),
    }),
    "Chunk": _object({"index": _integer(), "offset": _integer(), "length": _integer(),
                      "sha256": _nullable(_SHA256)}),
    "Node": _object({
        "node_id": _ID, "endpoint": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "active", "draining", "dead"]},
        "region": {"type": "string"}, "lat": _nullable({"type": "number"}),
        "lng": _nullable({"type": "number"}), "used_bytes": _integer(),
        "free_bytes": _integer(), "capacity_bytes": _integer(), "load": {"type": "number"},
        "last_heartbeat": _integer(),
    }),
    "Certificates": _object({"certificate": {"type": "string"},
                             "certificate_chain": {"type": "string"},
                             "root_certificate": {"type": "string"}}),
    "ApiKey": _object({
        "key_id": _ID, "name": {"type": "string"},
        "role": {"type": "string", "enum": ["user", "admin"]}, "created_at": _integer(),
        "revoked_at": _nullable(_integer())}),
    "ShareKeys": {"type": "object", "additionalProperties": {"type": "string"},
                  "description": "{kid: Ed25519 public key PEM}"},
}
SCHEMAS["Registered"] = {"allOf": [_ref("Certificates"), _object({
    "node_id": _ID, "credential": {"type": "string"}, "share_public_keys": _ref("ShareKeys"),
    "heartbeat_interval": _integer(1), "chunk_size": _integer(1), "bucket": {"type": "string"},
})]}

_CLUSTER_NODE = _object({
    "node_id": _ID, "endpoint": {"type": "string"},
    "status": {"type": "string", "enum": ["pending", "active", "draining"]},
    "used_bytes": _integer(),
    "free_bytes": _integer(), "capacity_bytes": _integer(), "load": {"type": "number"},
    "last_heartbeat": _integer(), "live": {"type": "boolean"}})
_HEARTBEAT_WORK = _object({
    "work_id": _ID, "kind": {"type": "string", "enum": ["warm", "evict"]}, "file_id": _ID,
    "version": _ID, "chunk_index": {"type": "integer", "minimum": -1},
    "chunks": {"type": "array", "maxItems": replication.MAX_BATCH_CHUNKS,
               "items": {"type": "integer", "minimum": 0},
               "description": "a warm's chunks (one batch); empty for an evict"}})

# Request bodies, field for field what the handlers validate.
# A file expiry: one of the two (both: 400); expires_at in the past: 400.
_EXPIRY = {
    "expires_at": _nullable({**_integer(0, validate.MAX_EXPIRES_AT),
                             "description": "unix seconds, in the future"}),
    "expires_in_seconds": _nullable({**_integer(1, validate.MAX_EXPIRES_IN),
                                     "description": "seconds from now"}),
}
_REGISTER = _object(
    {"join_token": _string(4096), "endpoint": _string(300, format="uri"),
     "region": _string(64), "capacity_bytes": _integer(), "csr": _string(pki.MAX_CSR_BYTES)},
    {"lat": _nullable({"type": "number", "minimum": -90, "maximum": 90}),
     "lng": _nullable({"type": "number", "minimum": -180, "maximum": 180}),
     "idempotency_key": _nullable({"type": "string", "minLength": 8, "maxLength": 128}),
     "aws_identity": {"type": "object", "description": "a signed, unsent sts:GetCallerIdentity "
                      "request: {method, url, headers, body} (docs/PROTOCOL.md, Node trust)"}})
_HEARTBEAT = _object(
    {"used_bytes": _integer(), "free_bytes": _integer(), "capacity_bytes": _integer(),
     "load": {"type": "number", "minimum": 0, "maximum": 1e9}},
    {"hot_files": {"type": "array", "maxItems": 1000, "items": _ID}})
_WORK_REPORT = _object({"ok": {"type": "boolean"}},
                       {"sha256": {"oneOf": [
                           {"type": "string"},
                           {"type": "array", "maxItems": replication.MAX_BATCH_CHUNKS,
                            "items": {"type": "string"},
                            "description": "a warm's digests, one per chunk in order"}]},
                        "error": {"type": "string"}})
_UPLOAD = _object(
    {"size": _integer(0, uploads.MAX_FILE_SIZE),
     "chunk_sha256": {"type": "array", "items": _SHA256,
                      "description": "one digest per chunk_size bytes, in order"},
     "part_sha256": {"type": "array", "items": _SHA256, "minItems": 1,
                     "maxItems": uploads.MAX_PARTS,
                     "description": "one digest per multipart part (part_size bytes: whole "
                                    "chunks, grown past 10,000 parts of the published "
                                    "part_size), in order; an empty file has one empty "
                                    "part"}},
    {"path": _nullable(_string(900, description="the file's path (required without "
                               "file_id); a live file there gets a new version")),
     "file_id": {**_ID, "description": "upload a new version of this ready file"},
     "content_type": _nullable(_string(255, pattern=_pattern(validate.HEADER_TEXT),
                                       description="default: by the path's extension")),
     **_EXPIRY})
_PART_PAGE = {
    "part_count": _integer(1, uploads.MAX_PARTS),
    "parts": {"type": "array", "maxItems": uploads.PARTS_PAGE, "items": _object({
        "part_number": _integer(1), "offset": _integer(), "length": _integer(),
        "sha256": _SHA256,
        "headers": _object({"x-amz-checksum-sha256": {
            "type": "string", "description": "send with the PUT: the URL signs it"}}),
        "url": {"type": "string"}})},
    "next_part": _nullable({**_integer(1, uploads.MAX_PARTS),
                            "description": "first part of the next page (GET "
                                           "/files/{file_id}/parts?first=N); null: no more"}),
}
_COMPLETE = _object({"parts": {"type": "array", "maxItems": uploads.MAX_PARTS, "items": _object(
    {"part_number": _integer(1, 10000), "etag": _string(128)})}})
_SHARE_POLICY = {
    "not_before": _nullable(_integer(0, 2**40)),
    "ip": _nullable(_string(64, description="a client network in CIDR form")),
}
_SHARE = _object({"ttl_seconds": _integer(1, shares.MAX_TTL_SECONDS)}, _SHARE_POLICY)
_FOLDER_SHARE = _object(
    {"prefix": {"type": "string", "maxLength": 901,
                "description": "a folder: a path followed by '/', or '' for every file"},
     "ttl_seconds": _integer(1, shares.MAX_TTL_SECONDS)}, _SHARE_POLICY)
_LISTING = _object({
    "prefix": {"type": "string"}, "next_token": _nullable({"type": "string"}),
    "files": {"type": "array", "items": _object({
        "path": {"type": "string", "description": "relative to the folder"},
        "size": _integer(), "content_type": {"type": "string"},
        "etag": {"type": "string", "description": "the ETag edges answer with"}})}})
_IMPORT = _object(
    {"bucket": _string(63), "key": _string(1024, pattern=_pattern(validate.NO_CONTROL))},
    {"version_id": _nullable(_string(1024, pattern=_pattern(validate.TOKEN_TEXT))),
     "etag": _nullable(_string(128, pattern=_pattern(validate.ETAG_TEXT))),
     "path": _nullable(_string(900, description="default: the key")),
     "content_type": _nullable(_string(255, pattern=_pattern(validate.HEADER_TEXT))),
     **_EXPIRY})
_FILE_PATCH = {**_object({}, _EXPIRY), "minProperties": 1,
               "description": "expires_at: null clears the expiry"}
_RENEW = _object({"csr": _string(pki.MAX_CSR_BYTES)})
_KEY = _object({"name": _string(100, pattern=_pattern(validate.HEADER_TEXT))},
               {"role": _nullable({"type": "string", "enum": ["user", "admin"]})})

_ERROR_TEXT = {
    400: "invalid input", 401: "missing or wrong credential", 403: "forbidden",
    404: "not found", 409: "conflict", 410: "gone (deleted, or another version)",
    413: "body too large", 415: "body is not JSON", 416: "range not satisfiable",
    503: "a dependency (store, CA, bucket) is unavailable",
}
# fmt: on


def _path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or _ID}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _op(
    summary: str,
    security: list[dict[str, list[str]]],
    answer: dict[str, Any] | None,
    errors: tuple[int, ...],
    *,
    body: dict[str, Any] | None = None,
    status: int = 200,
    params: list[dict[str, Any]] | None = None,
    media: str = "application/json",
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": summary}
    if answer is not None:
        ok["content"] = {media: {"schema": answer}}
    if headers:
        ok["headers"] = headers
    responses: dict[str, Any] = {str(status): ok}
    statuses = set(errors)
    if security:
        statuses.add(401)
    if body is not None:
        statuses |= {400, 413, 415}
    for code in sorted(statuses):
        responses[str(code)] = {"description": _ERROR_TEXT[code], "content": _json(_ref("Error"))}
    op: dict[str, Any] = {"summary": summary, "security": security, "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
    return op


_NODE_ID = _path_param("node_id")
_FILE_ID = _path_param("file_id")
_LOCATION = {"Location": {"required": True, "schema": {"type": "string"}}}


def _folder_op(*, greedy: bool = False) -> dict[str, Any]:
    """A folder share's URL: the folder itself answers its listing; a file below it
    307s to an edge (same path form), or, with no edge, to the origin (a playlist is
    answered here)."""
    op = _op(
        "Open a folder share: the folder's listing, or 307 to an edge (placed by "
        "folder) keeping the path form",
        PUBLIC,
        _LISTING,
        (400, 403, 404, 410, 503),
        params=[
            _path_param("token", {"type": "string"}),
            *([_path_param("proxy+", {"type": "string"})] if greedy else []),
            _query("limit", _integer(1, 1000)),
            _query("next_token", {"type": "string"}),
        ],
    )
    op["responses"]["200"]["content"].update(
        {
            media: {"schema": {"type": "string"}}
            for media in ("application/vnd.apple.mpegurl", "application/dash+xml")
        }
    )
    op["responses"]["307"] = {
        "description": "to an edge, or a presigned origin URL",
        "headers": _LOCATION,
    }
    return op


# The route table: one operation a line or a few, as the routes read (fmt: off).
# fmt: off
PATHS: dict[str, dict[str, Any]] = {
    "/nodes/register": {"post": _op(
        "Register an edge node: the join token is in the body; ACM PCA signs its CSR",
        PUBLIC, _ref("Registered"), (401, 403, 409, 503), body=_REGISTER)},
    "/nodes/{node_id}/heartbeat": {"post": _op(
        "Node heartbeat: record usage, refresh the TTL, answer status, keys and work",
        NODE, _object({"status": {"type": "string"}, "heartbeat_interval": _integer(1),
                       "share_public_keys": _ref("ShareKeys"),
                       "work": {"type": "array", "items": _HEARTBEAT_WORK,
                                "maxItems": edge_work.MAX_WORK_PER_HEARTBEAT}},
                      {"public_name": {"type": "string"},
                       "public_certificate_serial": {"type": "string"}}),
        (403, 404), body=_HEARTBEAT, params=[_NODE_ID])},
    "/nodes/{node_id}/work/{work_id}": {"post": _op(
        "Report a work item's outcome (the workflow waiting on it resumes)", NODE,
        _object({"work_id": _ID, "node_id": _ID, "recorded": {"type": "boolean"},
                 "error": _nullable({"type": "string"})}),
        (403, 404, 503), body=_WORK_REPORT, params=[_NODE_ID, _path_param("work_id")])},
    "/nodes/{node_id}/renew": {"post": _op(
        "A new certificate for the node's recorded endpoint (register's CSR rules)", NODE,
        _ref("Certificates"), (403, 503), body=_RENEW, params=[_NODE_ID])},
    "/nodes/{node_id}/drain": {"post": _op(
        "Drain a node: placement stops choosing it; idempotent", MANAGED, _ref("Node"),
        (400, 404, 409), params=[_NODE_ID])},
    "/nodes/{node_id}/public-certificate": {"get": _op(
        "The fleet's public certificate for *.EDGE_DOMAIN and its key, for a placed node "
        "(404 without a domain)", NODE,
        _object({"name": {"type": "string"}, "serial": {"type": "string"},
                 "not_after": {"type": "string"}, "certificate": {"type": "string"},
                 "chain": {"type": "string"}, "private_key": {"type": "string"}}),
        (400, 403, 404, 503), params=[_NODE_ID])},
    "/nodes": {"get": _op("Every node, with its public name (null without a domain)", MANAGED,
                          _object({"edge_domain": _nullable({"type": "string"}),
                                   "nodes": {"type": "array", "items": {"allOf": [
                                       _ref("Node"), _object(
                                           {"public_name": _nullable({"type": "string"})})]}}}),
                          ())},
    "/cluster": {"get": _op(
        "Capacity summed over live nodes, and every node's load and status", MANAGED,
        _object({"total_bytes": _integer(), "used_bytes": _integer(),
                 "free_bytes": _integer(), "live_nodes": _integer(),
                 "nodes": {"type": "array", "items": _CLUSTER_NODE}}), ())},
    "/files": {
        "post": _op("Start a multipart upload (or a new version of file_id); the answer "
                    "lists the first page of part URLs", MANAGED,
                    _object({"file_id": _ID, "version": _ID, "upload_id": {"type": "string"},
                             "chunk_size": _integer(1),
                             "part_size": _integer(1), **_PART_PAGE}),
                    (404, 409, 410, 503), body=_UPLOAD),
        "get": _op("A page of live files whose path starts with prefix, in path order "
                   "(a DynamoDB Query)", MANAGED,
                   _object({"prefix": {"type": "string"},
                            "files": {"type": "array", "items": _ref("FileRecord")},
                            "next_token": _nullable({"type": "string"})}),
                   (400,), params=[_query("prefix", {"type": "string", "maxLength": 900}),
                                   _query("limit", _integer(1, 1000)),
                                   _query("next_token", {"type": "string"})]),
    },
    "/files/import": {"post": _op(
        "Register an object already in S3, pinned by version id or ETag", MANAGED,
        _ref("FileRecord"), (403, 404, 409, 410, 503), body=_IMPORT)},
    "/files/{file_id}": {
        "get": _op("A file record", MANAGED, _ref("FileRecord"), (400, 404),
                   params=[_FILE_ID]),
        "delete": _op("Tombstone the file and free its path; collected after the grace "
                      "period", MANAGED,
                      _object({"file_id": _ID, "version": _ID,
                               "status": {"type": "string", "enum": ["deleting"]}}),
                      (400, 404, 409, 503), status=202, params=[_FILE_ID]),
        "patch": _op("Set or clear the file's expiry (a new version keeps it)", MANAGED,
                     _ref("FileRecord"), (404, 409, 410, 503), body=_FILE_PATCH,
                     params=[_FILE_ID]),
    },
    "/files/{file_id}/parts": {"get": _op(
        "A page of freshly signed part URLs of the file's upload in flight", MANAGED,
        _object({"file_id": _ID, "version": _ID, "upload_id": {"type": "string"},
                 **_PART_PAGE}),
        (400, 404, 409, 503),
        params=[_FILE_ID, _query("first", _integer(1, uploads.MAX_PARTS)),
                _query("limit", _integer(1, uploads.PARTS_PAGE))])},
    "/files/{file_id}/upload": {"delete": _op(
        "Cancel the file's upload in flight (the uploader's own, named by upload_id)",
        MANAGED, _object({"file_id": _ID, "version": _ID,
                          "status": {"type": "string", "enum": ["cancelled"]}}),
        (400, 404, 409, 503),
        params=[_FILE_ID, {**_query("upload_id", {"type": "string", "minLength": 1,
                                                  "maxLength": 1024}), "required": True}])},
    "/files/{file_id}/complete": {"post": _op(
        "Complete an upload: parts checked against the declared sizes and SHA-256s "
        "(a mismatch discards the upload), the version published in one step",
        MANAGED, _ref("FileRecord"), (404, 409, 503), body=_COMPLETE, params=[_FILE_ID])},
    "/files/{file_id}/plan": {"get": _op(
        "Download plan (compact, paged): chunks of a byte range, each naming its replica "
        "edges by index into nodes, one S3 fallback URL for the object",
        MANAGED, _object({
            "file_id": _ID, "version": _ID, "size": _integer(), "chunk_size": _integer(1),
            "content_type": {"type": "string"}, "etag": {"type": "string"},
            "edge_query": {"type": "string"}, "expires": _integer(),
            "nodes": {"type": "array", "items": _object(
                {"node_id": _ID, "url": {"type": "string"}})},
            "s3_url": {"type": "string", "description": "presigned GET; send Range"},
            "chunks": {"type": "array", "items": {"allOf": [_ref("Chunk"), _object({
                "replicas": {"type": "array", "items": _integer(),
                             "description": "indexes into nodes, preferred first"}})]}},
            "next_offset": _nullable({**_integer(), "description": "continue the range "
                                      "from here (null: this page ends it)"})}),
        (400, 404, 410, 416, 503),
        params=[_FILE_ID, _query("offset", _integer()), _query("length", _integer(1)),
                _query("limit", _integer(1, plans.PLAN_PAGE))])},
    "/files/{file_id}/rehash": {"post": _op(
        "Hash the current version from S3 again and replace recorded hashes that differ",
        MANAGED, _object({"file_id": _ID, "version": _ID,
                          "execution": _nullable({"type": "string"})},
                         {"outcome": {"type": "object", "description": "the job's outcome, "
                                      "when it ran in the request (no state machine)"}}),
        (400, 404, 410, 503), status=202, params=[_FILE_ID])},
    "/files/{file_id}/share": {"post": _op(
        "Mint an expiring share URL of the file, any current version (optionally "
        "not-before, client network); expires no later than the file",
        MANAGED, _object({"share_url": {"type": "string"}, "expires": _integer()}),
        (404, 410, 503), body=_SHARE, params=[_FILE_ID])},
    "/shares": {"post": _op(
        "Mint a folder share: share_url ends in '/', a file below it is share_url plus "
        "its relative path", MANAGED,
        _object({"share_url": {"type": "string"}, "prefix": {"type": "string"},
                 "expires": _integer()}), (503,), body=_FOLDER_SHARE)},
    "/s/{file_id}": {method: _op(
        "Open a file share: 307 to the chosen edge with the share's signed fields and "
        "v (the current version) and vt (its version ticket), or to the origin when no "
        "edge can take it",
        PUBLIC, None, (400, 403, 404, 410, 503), status=307, headers=_LOCATION,
        params=[_FILE_ID, *(_query(name, {"type": "string"})
                            for name in ("v", "vt", "exp", "nbf", "ip", "kid", "sig"))])
        for method in ("get", "head")},
    "/t/{token}": {method: _folder_op() for method in ("get", "head")},
    "/t/{token}/{proxy+}": {method: _folder_op(greedy=True) for method in ("get", "head")},
    "/keys": {
        "post": _op("Create an API key; the key is in this answer only (admin keys only)",
                    MANAGED, {"allOf": [_ref("ApiKey"), _object({"key": {"type": "string"}})]},
                    (403, 503), body=_KEY, status=201),
        "get": _op("A page of API keys, never the keys themselves (admin keys only)", MANAGED,
                   _object({"keys": {"type": "array", "items": _ref("ApiKey")},
                            "next_token": _nullable(_ID)}),
                   (400, 403, 503), params=[_query("limit", _integer(1, 1000)),
                                            _query("next_token", _ID)]),
    },
    "/keys/{key_id}": {"delete": _op(
        "Revoke an API key (API Gateway may accept it from its authorizer cache for up to "
        "60 s more); idempotent (admin keys only)", MANAGED, _ref("ApiKey"),
        (400, 403, 404, 503), params=[_path_param("key_id")])},
    "/openapi.json": {"get": _op("This document", PUBLIC, {"type": "object"}, ())},
    # The web page (chalicelib/web.py): HTML, its scripts and style, and its settings.
    "/": {"get": _op("Upload page", PUBLIC, {"type": "string"}, (), media="text/html")},
    "/player": {"get": _op("Player page for a share URL", PUBLIC, {"type": "string"}, (),
                           media="text/html")},
    "/web/app.js": {"get": _op("Upload page script", PUBLIC, {"type": "string"}, (),
                               media="text/javascript")},
    "/web/player.js": {"get": _op("Player page script", PUBLIC, {"type": "string"}, (),
                                  media="text/javascript")},
    "/web/folders.js": {"get": _op("Upload page script: folders and folder shares", PUBLIC,
                                   {"type": "string"}, (), media="text/javascript")},
    "/web/hls.min.js": {"get": _op("hls.js, the pinned version (web/package-lock.json)",
                                   PUBLIC, {"type": "string"}, (), media="text/javascript")},
    "/web/style.css": {"get": _op("Page style", PUBLIC, {"type": "string"}, (),
                                  media="text/css")},
    "/web/config.json": {"get": _op(
        "What an uploader needs before POST /files", PUBLIC,
        _object({"chunk_size": _integer(1), "part_size": _integer(1)}), ())},
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
