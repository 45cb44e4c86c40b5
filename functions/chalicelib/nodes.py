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
    IdempotencyValidationError,
)
from cryptography import x509
from fsnode_core.errors import (
    IDEMPOTENCY_KEY_REUSED,
    Conflict,
    FsnodeError,
    InvalidInput,
    NotFound,
)
from fsnode_core.ids import check_id, new_id
from fsnode_core.models import (
    NODE_ACTIVE,
    NODE_DEAD,
    NODE_DRAINED,
    NODE_DRAINING,
    NODE_PENDING,
    NODE_RETIRED,
    NodeRecord,
)

from chalicelib import (
    attestation,
    auth,
    aws,
    edge_work,
    endpoint_claims,
    pki,
    public_certificate,
    public_names,
    secret_store,
    validate,
)
from chalicelib.observability import (
    METRIC_HEARTBEAT,
    METRIC_NODE_DRAIN_DONE,
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
    """Validate a join request, then register (once per ``idempotency_key``): the
    join token, an endpoint in the fleet's namespace, and (where the settings name an
    edge role) the AWS identity of the caller, bound to the CSR's key."""
    auth.check_join_token(body.get("join_token"))
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 8 <= len(key) <= 128):
        raise InvalidInput(
            "idempotency_key must be a string of 8..128 characters", field="idempotency_key"
        )
    endpoint, csr = _checked_request(body)
    pki.check_namespace(endpoint, get_settings().node_namespace)
    identity_arn = attestation.verify(body.get("aws_identity"), pki.public_key_sha256(csr))
    request = {k: v for k, v in body.items() if k not in ("join_token", "aws_identity")}
    request["identity_arn"] = identity_arn
    if key is None or not get_settings().idempotency_table:
        answer = _register(request=request)
    else:
        # A replay is the same key for the same endpoint and public key: an edge that
        # lost its key, or moved, registers anew instead of getting a certificate for a
        # key it no longer has. (CSRs themselves differ per signing: ECDSA is randomized.)
        request["node_identity"] = f"{endpoint.url} {pki.public_key_sha256(csr)}"
        try:
            answer = _idempotent_register()(request=request)
        except IdempotencyAlreadyInProgressError as exc:
            raise Conflict("a register with this idempotency_key is still in progress") from exc
        except IdempotencyValidationError as exc:
            # The same key for a different request (as Stripe and S3 answer a reused
            # token): a replay must not hand back a node registered with other details.
            raise Conflict(
                "this idempotency_key was used for a different request",
                reason=IDEMPOTENCY_KEY_REUSED,
            ) from exc
    # The credential is derived again on every answer, a replay included: it is never
    # stored (the idempotency record keeps only the key id it was derived with).
    credential = auth.node_credential(answer["node_id"], answer["credential_kid"])
    return {**{k: v for k, v in answer.items() if k != "credential_kid"}, "credential": credential}


def _checked_request(
    request: dict[str, Any],
) -> tuple[pki.Endpoint, x509.CertificateSigningRequest]:
    """The endpoint and the CSR naming exactly its host (checked)."""
    endpoint = pki.parse_endpoint(validate.string(request, "endpoint", max_len=300) or "")
    csr = pki.check_csr(validate.string(request, "csr", max_len=pki.MAX_CSR_BYTES) or "", endpoint)
    return endpoint, csr


@cache
def _idempotent_register() -> Any:
    # Built on first use: the table name comes from settings, never at import time.
    # The stored answer holds no credential: a replay derives the same one again
    # (``auth.node_credential``), so no secret sits in the idempotency table.
    persistence = DynamoDBPersistenceLayer(
        table_name=get_settings().idempotency_table, boto3_client=aws.client("dynamodb")
    )
    # A replay must also repeat what the node said of itself (the CSR differs per
    # signing and is covered by node_identity's public key).
    config = IdempotencyConfig(
        event_key_jmespath="[idempotency_key, node_identity]",
        payload_validation_jmespath="[region, capacity_bytes, lat, lng]",
        expires_after_seconds=3600,
    )
    return idempotent_function(
        _register, data_keyword_argument="request", persistence_store=persistence, config=config
    )


def _register(request: dict[str, Any]) -> dict[str, Any]:
    settings = get_settings()
    endpoint, csr = _checked_request(request)
    # A fresh registration only: a replay answers for the node it registered before.
    endpoint_claims.check_free(endpoint.url)
    region = validate.string(request, "region", max_len=64) or ""
    lat = validate.number(request, "lat", low=-90, high=90, optional=True)
    lng = validate.number(request, "lng", low=-180, high=180, optional=True)
    capacity = validate.integer(request, "capacity_bytes", low=0)
    node_id = new_id()
    issued = pki.issue(
        endpoint, request["csr"], settings.cert_validity_days, idempotency_token=node_id
    )
    credential_kid = auth.credential_kid()
    credential = auth.node_credential(node_id, credential_kid)
    now = int(time.time())
    node = NodeRecord(
        node_id=node_id,
        endpoint=endpoint.url,
        region=region,
        capacity_bytes=capacity,
        credential_sha256=auth.credential_hash(credential),
        lat=lat,
        lng=lng,
        free_bytes=capacity,
        last_heartbeat=now,
        registered_at=now,
        expires_at=now + settings.heartbeat_timeout * TTL_HEARTBEATS,
        certificate_arn=issued.arn,
        status=NODE_PENDING,
        certificate_sha256=endpoint_claims.certificate_sha256(issued.certificate),
        identity_arn=request.get("identity_arn"),
    )
    aws.node_registry().create(node)
    metrics.add_metric(name=METRIC_NODE_REGISTERED, unit="Count", value=1)
    logger.info(
        "node registered",
        extra={
            "node_id": node_id,
            "endpoint": endpoint.url,
            "subject": csr.subject.rfc4514_string(),
        },
    )
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
    node = auth.require_node(headers, node_id, auth.MAY_BEAT)
    settings = get_settings()
    hot = body.get("hot_files", [])
    if not isinstance(hot, list) or len(hot) > MAX_HOT_FILES:
        raise InvalidInput(
            f"hot_files must be a list of at most {MAX_HOT_FILES} file ids", field="hot_files"
        )
    hot_files = [check_id(file_id, "hot_files") for file_id in hot]
    if node.status == NODE_PENDING:
        # Placed only once its endpoint presents the certificate issued to it.
        endpoint_claims.prove(node)
    now = int(time.time())
    load = validate.number(body, "load", low=0, high=1e9) or 0.0
    node = aws.node_registry().heartbeat(
        node_id,
        used_bytes=validate.integer(body, "used_bytes"),
        free_bytes=validate.integer(body, "free_bytes"),
        capacity_bytes=validate.integer(body, "capacity_bytes"),
        load=load,
        # Only a placed node's word starts replication (prune reads hot_files).
        hot_files=hot_files if node.status in auth.MAY_WORK else [],
        now=now,
        expires_at=now + settings.heartbeat_timeout * TTL_HEARTBEATS,
    )
    metrics.add_metric(name=METRIC_HEARTBEAT, unit="Count", value=1)
    if node.status == NODE_DRAINING and load == 0:
        node.status = _finish_drain(node)
    work = edge_work.pending_for(node_id, now) if node.status in auth.MAY_WORK else []
    answer = {
        "status": node.status,
        "heartbeat_interval": settings.heartbeat_interval,
        "share_public_keys": secret_store.share_public_keys(settings.signing_key_secret),
        "work": [item.to_api() for item in work],
    }
    if node.status in auth.MAY_SERVE and public_names.enabled():
        # The edge fetches the certificate when this differs from the one it serves.
        answer["public_name"] = public_names.name_of(node_id)
        try:
            answer["public_certificate_serial"] = public_certificate.serial()
        except FsnodeError as exc:
            # Not exported yet (ACM still validating): the beat itself must not fail.
            logger.warning("no public certificate to hand out", extra={"reason": exc.message})
    return answer


def _finish_drain(node: NodeRecord) -> str:
    """A draining node with nothing in flight has finished its streams: drained, out
    of the fleet (prune heals its copies elsewhere). Its status after the attempt."""
    try:
        aws.node_registry().set_status(node.node_id, NODE_DRAINED, expected=NODE_DRAINING)
    except Conflict:
        # Moved meanwhile (declared dead, or a concurrent beat finished the drain).
        current = aws.node_registry().get(node.node_id)
        return current.status if current is not None else NODE_DEAD
    metrics.add_metric(name=METRIC_NODE_DRAIN_DONE, unit="Count", value=1)
    logger.info("node drained", extra={"node_id": node.node_id})
    return NODE_DRAINED


def public_certificate_for(node_id: str, headers: Any) -> dict[str, Any]:
    """The public certificate (and its key) for a placed node: its own channel only."""
    check_id(node_id, "node_id")
    auth.require_node(headers, node_id, auth.MAY_SERVE)
    return public_certificate.bundle()


def list_nodes() -> dict[str, Any]:
    """Every node's public view, with its public name (null without a domain)."""
    return {
        "edge_domain": get_settings().edge_domain if public_names.enabled() else None,
        "nodes": [
            {
                **node.to_api(),
                "public_name": public_names.name_of(node.node_id)
                if node.status == NODE_ACTIVE
                else None,
            }
            for node in aws.node_registry().list_nodes()
        ],
    }


def renew(node_id: str, headers: Any, body: dict[str, Any]) -> dict[str, Any]:
    """A new certificate for a registered node, under the register CSR rules."""
    check_id(node_id, "node_id")
    node = auth.require_node(headers, node_id, auth.MAY_BEAT)
    settings = get_settings()
    endpoint = pki.parse_endpoint(node.endpoint)
    pem = validate.string(body, "csr", max_len=pki.MAX_CSR_BYTES) or ""
    pki.check_csr(pem, endpoint)
    issued = pki.issue(endpoint, pem, settings.cert_validity_days, idempotency_token=new_id())
    aws.node_registry().set_certificate(
        node_id, issued.arn, endpoint_claims.certificate_sha256(issued.certificate)
    )
    metrics.add_metric(name=METRIC_NODE_RENEWED, unit="Count", value=1)
    logger.info("node certificate renewed", extra={"node_id": node_id})
    return {
        "certificate": issued.certificate,
        "certificate_chain": issued.chain,
        "root_certificate": issued.root,
    }


def drain(node_id: str) -> dict[str, Any]:
    """Stop placing new traffic on a node; it keeps heartbeating (idempotent)."""
    check_id(node_id, "node_id")
    registry = aws.node_registry()
    node = registry.get(node_id)
    if node is None:
        raise NotFound("no such node", node_id=node_id)
    if node.status == NODE_DEAD:
        raise Conflict("a dead node cannot be drained", node_id=node_id)
    if node.status == NODE_DRAINED:
        return node.to_api()  # already done
    if node.status == NODE_ACTIVE:
        registry.set_status(node_id, NODE_DRAINING, expected=NODE_ACTIVE)
        metrics.add_metric(name=METRIC_NODE_DRAINED, unit="Count", value=1)
        public_names.withdraw(node)  # new viewers no longer find it by name
    node.status = NODE_DRAINING
    return node.to_api()


def cluster() -> dict[str, Any]:
    """Capacity summed over live nodes (heard from recently, in the fleet), and every
    node in the fleet (neither dead nor drained)."""
    timeout = get_settings().heartbeat_timeout
    now = time.time()
    nodes = [n for n in aws.node_registry().list_nodes() if n.status not in NODE_RETIRED]
    live = [n for n in nodes if now - n.last_heartbeat <= timeout and n.status != NODE_PENDING]
    view = [
        {
            key: n.to_api()[key]
            for key in (
                "node_id",
                "endpoint",
                "status",
                "used_bytes",
                "free_bytes",
                "capacity_bytes",
                "load",
                "last_heartbeat",
            )
        }
        | {"live": n in live}
        for n in nodes
    ]
    return {
        "total_bytes": sum(n.capacity_bytes for n in live),
        "used_bytes": sum(n.used_bytes for n in live),
        "free_bytes": sum(n.free_bytes for n in live),
        "live_nodes": len(live),
        "nodes": view,
    }
