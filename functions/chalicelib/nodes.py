"""Node lifecycle: register (idempotent), heartbeat, list, manifest for edges."""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from fsnode_core.chunks import chunk_bounds
from fsnode_core.errors import Conflict, Gone, InvalidInput, NotFound
from fsnode_core.ids import check_id, new_id
from fsnode_core.models import FILE_READY, NODE_ACTIVE, NODE_DEAD, NODE_DRAINING, NodeRecord

from chalicelib import auth, aws, edge_work, manifests, pki, secret_store, validate
from chalicelib.observability import (
    METRIC_HEARTBEAT,
    METRIC_MANIFEST_SERVED,
    METRIC_NODE_DRAINED,
    METRIC_NODE_REGISTERED,
    METRIC_NODE_RENEWED,
    logger,
    metrics,
)
from chalicelib.settings import get_settings

# Heartbeats missed before a node's item expires by TTL (prune marks it dead sooner).
TTL_HEARTBEATS = 10
MAX_HOT_FILES = 1000


def register(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a join request, then register (once per ``idempotency_key``)."""
    auth.check_join_token(body.get("join_token"))
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 8 <= len(key) <= 128):
        raise InvalidInput("idempotency_key must be a string of 8..128 characters",
                           field="idempotency_key")
    request = {k: v for k, v in body.items() if k != "join_token"}
    if key is None or not get_settings().idempotency_table:
        answer = _register(request=request)
    else:
        # A replay is the same key for the same endpoint and public key: an edge that
        # lost its key, or moved, registers anew instead of getting a certificate for a
        # key it no longer has. (CSRs themselves differ per signing: ECDSA is randomized.)
        request["node_identity"] = _identity(request)
        try:
            answer = _idempotent_register()(request=request)
        except IdempotencyAlreadyInProgressError as exc:
            raise Conflict("a register with this idempotency_key is still in progress") from exc
    # The credential is derived again on every answer, a replay included: it is never
    # stored (the idempotency record keeps only the key id it was derived with).
    credential = auth.node_credential(answer["node_id"], answer["credential_kid"])
    return {**{k: v for k, v in answer.items() if k != "credential_kid"},
            "credential": credential}


def _identity(request: dict[str, Any]) -> str:
    """What a registration is for: its endpoint and the CSR's public key (checked)."""
    endpoint = pki.parse_endpoint(validate.string(request, "endpoint", max_len=300) or "")
    csr = pki.check_csr(validate.string(request, "csr", max_len=pki.MAX_CSR_BYTES) or "",
                        endpoint)
    return f"{endpoint.url} {pki.public_key_sha256(csr)}"


@cache
def _idempotent_register() -> Any:
    # Built on first use: the table name comes from settings, never at import time.
    # The stored answer holds no credential: a replay derives the same one again
    # (``auth.node_credential``), so no secret sits in the idempotency table.
    persistence = DynamoDBPersistenceLayer(
        table_name=get_settings().idempotency_table, boto3_client=aws.client("dynamodb")
    )
    config = IdempotencyConfig(event_key_jmespath="[idempotency_key, node_identity]",
                               expires_after_seconds=3600)
    return idempotent_function(
        _register, data_keyword_argument="request", persistence_store=persistence, config=config
    )


def _register(request: dict[str, Any]) -> dict[str, Any]:
    settings = get_settings()
    endpoint = pki.parse_endpoint(validate.string(request, "endpoint", max_len=300) or "")
    csr = pki.check_csr(validate.string(request, "csr", max_len=pki.MAX_CSR_BYTES) or "",
                        endpoint)
    region = validate.string(request, "region", max_len=64) or ""
    lat = validate.number(request, "lat", low=-90, high=90, optional=True)
    lng = validate.number(request, "lng", low=-180, high=180, optional=True)
    capacity = validate.integer(request, "capacity_bytes", low=0)
    node_id = new_id()
    issued = pki.issue(endpoint, request["csr"], settings.cert_validity_days,
                       idempotency_token=node_id)
    credential_kid = auth.credential_kid()
    credential = auth.node_credential(node_id, credential_kid)
    now = int(time.time())
    node = NodeRecord(
        node_id=node_id, endpoint=endpoint.url, region=region, capacity_bytes=capacity,
        credential_sha256=auth.credential_hash(credential), lat=lat, lng=lng,
        free_bytes=capacity, last_heartbeat=now, registered_at=now,
        expires_at=now + settings.heartbeat_timeout * TTL_HEARTBEATS,
        certificate_arn=issued.arn,
    )
    aws.node_registry().create(node)
    metrics.add_metric(name=METRIC_NODE_REGISTERED, unit="Count", value=1)
    logger.info("node registered", extra={"node_id": node_id, "endpoint": endpoint.url,
                                           "subject": csr.subject.rfc4514_string()})
    return {
        "node_id": node_id,
        "credential_kid": credential_kid,
        "certificate": issued.certificate,
        "certificate_chain": issued.chain,
        "root_certificate": issued.root,
        "share_public_keys": secret_store.share_public_keys(settings.signing_key_secret),
        "heartbeat_interval": settings.heartbeat_interval,
        "chunk_size": settings.chunk_size,
        "bucket": settings.bucket,
    }


def heartbeat(node_id: str, headers: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Record a node's state; answer with its status, keys and pending work."""
    check_id(node_id, "node_id")
    auth.require_node(headers, node_id)
    settings = get_settings()
    hot = body.get("hot_files", [])
    if not isinstance(hot, list) or len(hot) > MAX_HOT_FILES:
        raise InvalidInput(f"hot_files must be a list of at most {MAX_HOT_FILES} file ids",
                           field="hot_files")
    hot_files = [check_id(file_id, "hot_files") for file_id in hot]
    now = int(time.time())
    node = aws.node_registry().heartbeat(
        node_id,
        used_bytes=validate.integer(body, "used_bytes"),
        free_bytes=validate.integer(body, "free_bytes"),
        capacity_bytes=validate.integer(body, "capacity_bytes"),
        load=validate.number(body, "load", low=0, high=1e9) or 0.0,
        hot_files=hot_files,
        now=now,
        expires_at=now + settings.heartbeat_timeout * TTL_HEARTBEATS,
    )
    metrics.add_metric(name=METRIC_HEARTBEAT, unit="Count", value=1)
    work = edge_work.pending_for(node_id, now)
    return {
        "status": node.status,
        "heartbeat_interval": settings.heartbeat_interval,
        "share_public_keys": secret_store.share_public_keys(settings.signing_key_secret),
        "work": [item.to_api() for item in work],
    }


def list_nodes() -> dict[str, Any]:
    """Every node's public view."""
    return {"nodes": [node.to_api() for node in aws.node_registry().list_nodes()]}


def manifest(node_id: str, file_id: str, headers: Any) -> dict[str, Any]:
    """What an edge needs to serve a file: its record and every chunk's hash, read from
    the version manifest in S3 (an edge will read that object itself: this route stays
    until edges do)."""
    check_id(node_id, "node_id")
    check_id(file_id, "file_id")
    # An edge asks on every cold file: its credential, once checked, is trusted for a
    # short while, so a manifest is one DynamoDB request and a (cached) S3 read.
    auth.check_node(headers, node_id)
    meta = aws.chunk_catalog().get_file(file_id)
    if meta is None:
        raise NotFound("no such file", file_id=file_id)
    if meta.status != FILE_READY:
        raise Gone("file was deleted", file_id=file_id)
    hashes = manifests.read_manifest(file_id, meta.version).chunk_hashes()
    metrics.add_metric(name=METRIC_MANIFEST_SERVED, unit="Count", value=1)
    chunks = []
    for index in range(meta.chunk_count()):
        offset, length = chunk_bounds(index, meta.size, meta.chunk_size)
        chunks.append({"index": index, "offset": offset, "length": length,
                       "sha256": hashes[index] if hashes is not None else None})
    return {**meta.to_api(), "chunks": chunks}


def renew(node_id: str, headers: Any, body: dict[str, Any]) -> dict[str, Any]:
    """A new certificate for a registered node, under the register CSR rules."""
    check_id(node_id, "node_id")
    node = auth.require_node(headers, node_id)
    settings = get_settings()
    endpoint = pki.parse_endpoint(node.endpoint)
    pem = validate.string(body, "csr", max_len=pki.MAX_CSR_BYTES) or ""
    pki.check_csr(pem, endpoint)
    issued = pki.issue(endpoint, pem, settings.cert_validity_days, idempotency_token=new_id())
    aws.node_registry().set_certificate(node_id, issued.arn)
    metrics.add_metric(name=METRIC_NODE_RENEWED, unit="Count", value=1)
    logger.info("node certificate renewed", extra={"node_id": node_id})
    return {"certificate": issued.certificate, "certificate_chain": issued.chain,
            "root_certificate": issued.root}


def drain(node_id: str) -> dict[str, Any]:
    """Stop placing new traffic on a node; it keeps heartbeating (idempotent)."""
    check_id(node_id, "node_id")
    registry = aws.node_registry()
    node = registry.get(node_id)
    if node is None:
        raise NotFound("no such node", node_id=node_id)
    if node.status == NODE_DEAD:
        raise Conflict("a dead node cannot be drained", node_id=node_id)
    if node.status == NODE_ACTIVE:
        registry.set_status(node_id, NODE_DRAINING, expected=NODE_ACTIVE)
        metrics.add_metric(name=METRIC_NODE_DRAINED, unit="Count", value=1)
    node.status = NODE_DRAINING
    return node.to_api()


def cluster() -> dict[str, Any]:
    """Capacity summed over live nodes (heard from recently, not dead), and every node."""
    timeout = get_settings().heartbeat_timeout
    now = time.time()
    nodes = [n for n in aws.node_registry().list_nodes() if n.status != NODE_DEAD]
    live = [n for n in nodes if now - n.last_heartbeat <= timeout]
    view = [{key: n.to_api()[key] for key in ("node_id", "endpoint", "status", "used_bytes",
                                              "free_bytes", "capacity_bytes", "load",
                                              "last_heartbeat")} | {"live": n in live}
            for n in nodes]
    return {"total_bytes": sum(n.capacity_bytes for n in live),
            "used_bytes": sum(n.used_bytes for n in live),
            "free_bytes": sum(n.free_bytes for n in live),
            "live_nodes": len(live), "nodes": view}
