"""The OpenAPI component schemas and the request and answer bodies of the routes,
field for field what the handlers validate and answer."""

from __future__ import annotations

from typing import Any

from fsnode_core.models import NODE_STATUSES

from chalicelib import pki, replication, shares, uploads, validate
from chalicelib.openapi_builders import (
    ID,
    SHA256,
    anchored,
    integer,
    nullable,
    obj,
    ref,
    string,
)

# The schemas: each field beside its neighbours, as the wire format reads (fmt: off).
# fmt: off
SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": obj({"error": obj(
        {"code": {"type": "string"}, "message": {"type": "string"}},
        {"details": {"type": "object"}})}),
    "FileRecord": obj({
        "file_id": ID, "version": ID,
        "path": {"type": "string", "description": "the file's identity among live files"},
        "name": {"type": "string", "description": "the path's last segment"},
        "chunks_sha256": nullable({**SHA256, "description": "SHA-256 over the raw chunk "
                                    "digests (null: an import not hashed yet)"}),
        "size": integer(), "content_type": {"type": "string"}, "etag": {"type": "string"},
        "last_modified": integer(), "chunk_size": integer(1), "bucket": {"type": "string"},
        "key": {"type": "string"},
        "status": {"type": "string", "enum": ["ready", "deleting", "deleted"]},
        "created_at": integer(), "updated_at": integer(),
        "source": {"type": "string", "enum": ["upload", "import"]},
        "version_id": nullable({"type": "string"}),
        "expires_at": nullable({**integer(), "description": "unix seconds after which the "
                                 "file is collected (null: kept until deleted)"}),
    }),
    "Chunk": obj({"index": integer(), "offset": integer(), "length": integer(),
                      "sha256": nullable(SHA256)}),
    "Node": obj({
        "node_id": ID, "endpoint": {"type": "string"},
        "status": {"type": "string", "enum": list(NODE_STATUSES)},
        "region": {"type": "string"}, "lat": nullable({"type": "number"}),
        "lng": nullable({"type": "number"}), "used_bytes": integer(),
        "free_bytes": integer(), "capacity_bytes": integer(), "load": {"type": "number"},
        "last_heartbeat": integer(),
    }),
    "Certificates": obj({"certificate": {"type": "string"},
                             "certificate_chain": {"type": "string"},
                             "root_certificate": {"type": "string"}}),
    "ApiKey": obj({
        "key_id": ID, "name": {"type": "string"},
        "role": {"type": "string", "enum": ["user", "admin"]}, "created_at": integer(),
        "revoked_at": nullable(integer())}),
    "ShareKeys": {"type": "object", "additionalProperties": {"type": "string"},
                  "description": "{kid: Ed25519 public key PEM}"},
}
SCHEMAS["Registered"] = {"allOf": [ref("Certificates"), obj({
    "node_id": ID, "credential": {"type": "string"}, "share_public_keys": ref("ShareKeys"),
    "heartbeat_interval": integer(1), "chunk_size": integer(1), "bucket": {"type": "string"},
})]}

CLUSTER_NODE = obj({
    "node_id": ID, "endpoint": {"type": "string"},
    "status": {"type": "string", "enum": ["pending", "active", "draining"]},
    "used_bytes": integer(),
    "free_bytes": integer(), "capacity_bytes": integer(), "load": {"type": "number"},
    "last_heartbeat": integer(), "live": {"type": "boolean"}})
HEARTBEAT_WORK = obj({
    "work_id": ID, "kind": {"type": "string", "enum": ["warm", "evict"]}, "file_id": ID,
    "version": ID, "chunk_index": {"type": "integer", "minimum": -1},
    "chunks": {"type": "array", "maxItems": replication.MAX_BATCH_CHUNKS,
               "items": {"type": "integer", "minimum": 0},
               "description": "a warm's chunks (one batch); empty for an evict"}})

# Request bodies, field for field what the handlers validate.
# A file expiry: one of the two (both: 400); expires_at in the past: 400.
_EXPIRY = {
    "expires_at": nullable({**integer(0, validate.MAX_EXPIRES_AT),
                             "description": "unix seconds, in the future"}),
    "expires_in_seconds": nullable({**integer(1, validate.MAX_EXPIRES_IN),
                                     "description": "seconds from now"}),
}
REGISTER = obj(
    {"join_token": string(4096), "endpoint": string(300, format="uri"),
     "region": string(64), "capacity_bytes": integer(), "csr": string(pki.MAX_CSR_BYTES)},
    {"lat": nullable({"type": "number", "minimum": -90, "maximum": 90}),
     "lng": nullable({"type": "number", "minimum": -180, "maximum": 180}),
     "idempotency_key": nullable({"type": "string", "minLength": 8, "maxLength": 128}),
     "aws_identity": {"type": "object", "description": "a signed, unsent sts:GetCallerIdentity "
                      "request: {method, url, headers, body} (docs/PROTOCOL.md, Node trust)"}})
HEARTBEAT = obj(
    {"used_bytes": integer(), "free_bytes": integer(), "capacity_bytes": integer(),
     "load": {"type": "number", "minimum": 0, "maximum": 1e9}},
    {"hot_files": {"type": "array", "maxItems": 1000, "items": ID}})
WORK_REPORT = obj({"ok": {"type": "boolean"}},
                       {"sha256": {"oneOf": [
                           {"type": "string"},
                           {"type": "array", "maxItems": replication.MAX_BATCH_CHUNKS,
                            "items": {"type": "string"},
                            "description": "a warm's digests, one per chunk in order"}]},
                        "error": {"type": "string"}})
UPLOAD = obj(
    {"size": integer(0, uploads.MAX_FILE_SIZE),
     "chunk_sha256": {"type": "array", "items": SHA256,
                      "description": "one digest per chunk_size bytes, in order"},
     "part_sha256": {"type": "array", "items": SHA256, "minItems": 1,
                     "maxItems": uploads.MAX_PARTS,
                     "description": "one digest per multipart part (part_size bytes: whole "
                                    "chunks, grown past 10,000 parts of the published "
                                    "part_size), in order; an empty file has one empty "
                                    "part"}},
    {"path": nullable(string(900, description="the file's path (required without "
                               "file_id); a live file there gets a new version")),
     "file_id": {**ID, "description": "upload a new version of this ready file"},
     "content_type": nullable(string(255, pattern=anchored(validate.HEADER_TEXT),
                                       description="default: by the path's extension")),
     **_EXPIRY})
PART_PAGE = {
    "part_count": integer(1, uploads.MAX_PARTS),
    "parts": {"type": "array", "maxItems": uploads.PARTS_PAGE, "items": obj({
        "part_number": integer(1), "offset": integer(), "length": integer(),
        "sha256": SHA256,
        "headers": obj({"x-amz-checksum-sha256": {
            "type": "string", "description": "send with the PUT: the URL signs it"}}),
        "url": {"type": "string"}})},
    "next_part": nullable({**integer(1, uploads.MAX_PARTS),
                            "description": "first part of the next page (GET "
                                           "/files/{file_id}/parts?first=N); null: no more"}),
}
COMPLETE = obj({"parts": {"type": "array", "maxItems": uploads.MAX_PARTS, "items": obj(
    {"part_number": integer(1, 10000), "etag": string(128)})}})
_SHARE_POLICY = {
    "not_before": nullable(integer(0, 2**40)),
    "ip": nullable(string(64, description="a client network in CIDR form")),
}
SHARE = obj({"ttl_seconds": integer(1, shares.MAX_TTL_SECONDS)}, _SHARE_POLICY)
FOLDER_SHARE = obj(
    {"prefix": {"type": "string", "maxLength": 901,
                "description": "a folder: a path followed by '/', or '' for every file"},
     "ttl_seconds": integer(1, shares.MAX_TTL_SECONDS)}, _SHARE_POLICY)
LISTING = obj({
    "prefix": {"type": "string"}, "next_token": nullable({"type": "string"}),
    "files": {"type": "array", "items": obj({
        "path": {"type": "string", "description": "relative to the folder"},
        "size": integer(), "content_type": {"type": "string"},
        "etag": {"type": "string", "description": "the ETag edges answer with"}})}})
IMPORT = obj(
    {"bucket": string(63), "key": string(1024, pattern=anchored(validate.NO_CONTROL))},
    {"version_id": nullable(string(1024, pattern=anchored(validate.TOKEN_TEXT))),
     "etag": nullable(string(128, pattern=anchored(validate.ETAG_TEXT))),
     "path": nullable(string(900, description="default: the key")),
     "content_type": nullable(string(255, pattern=anchored(validate.HEADER_TEXT))),
     **_EXPIRY})
FILE_PATCH = {**obj({}, _EXPIRY), "minProperties": 1,
               "description": "expires_at: null clears the expiry"}
RENEW = obj({"csr": string(pki.MAX_CSR_BYTES)})
KEY = obj({"name": string(100, pattern=anchored(validate.HEADER_TEXT))},
               {"role": nullable({"type": "string", "enum": ["user", "admin"]})})
# fmt: on
