"""Who may hold an endpoint: a node is placed only once its endpoint has presented, in
a TLS handshake, the certificate the CA issued to that node; a live node's endpoint
is nobody else's.

The handshake proves the private key too (the server signs it with the key of the
certificate it presents), so the probe shows the node runs at that address with its
own key. A node that proves an endpoint takes it over from any other record of it
(a restart that lost its state: the old record can no longer be serving there).
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import ssl
import time

from fsnode_core.errors import Conflict
from fsnode_core.models import (
    NODE_ACTIVE,
    NODE_DRAINING,
    NODE_PENDING,
    NODE_RETIRED,
    NodeRecord,
)

from chalicelib import aws, pki, public_names
from chalicelib.observability import logger
from chalicelib.settings import get_settings


def check_free(endpoint: str) -> None:
    """Conflict (409) when a live, placed node (active or draining, heard from within
    the heartbeat timeout) holds ``endpoint``. A pending node holds no claim: only the
    one that proves the endpoint gets it."""
    now = time.time()
    timeout = get_settings().heartbeat_timeout
    for node in aws.node_registry().list_nodes():
        if (
            node.endpoint == endpoint
            and node.status in (NODE_ACTIVE, NODE_DRAINING)
            and now - node.last_heartbeat <= timeout
        ):
            raise Conflict("this endpoint is held by a live node", endpoint=endpoint)


def prove(node: NodeRecord) -> bool:
    """Probe a pending node's endpoint; on a match make it active (placed) and retire
    every other record of that endpoint. False while the endpoint does not show it."""
    presented = presented_certificate_sha256(node.endpoint, get_settings().probe_timeout)
    if (
        presented is None
        or not node.certificate_sha256
        or not hmac.compare_digest(presented, node.certificate_sha256)
    ):
        logger.info(
            "endpoint not proved yet",
            extra={
                "node_id": node.node_id,
                "endpoint": node.endpoint,
                "reason": "unreachable" if presented is None else "another certificate",
            },
        )
        return False
    registry = aws.node_registry()
    # Its public name first: a failure leaves it pending, and the next beat tries again.
    public_names.publish(node)
    try:
        registry.set_status(node.node_id, NODE_ACTIVE, expected=NODE_PENDING)
    except Conflict:
        public_names.withdraw(node)
        return False  # declared dead meanwhile
    for other in registry.list_nodes():
        if (
            other.endpoint == node.endpoint
            and other.node_id != node.node_id
            and other.status not in NODE_RETIRED
        ):
            registry.retire(other.node_id)
            public_names.withdraw(other)
            logger.info(
                "endpoint taken over", extra={"node_id": node.node_id, "previous": other.node_id}
            )
    logger.info(
        "node proved its endpoint", extra={"node_id": node.node_id, "endpoint": node.endpoint}
    )
    return True


def presented_certificate_sha256(url: str, timeout: float) -> str | None:
    """SHA-256 of the DER leaf the endpoint presents in a completed TLS handshake (SNI:
    its DNS name, none for an address); None when no handshake completes."""
    endpoint = pki.parse_endpoint(url)
    host = str(endpoint.host)
    is_address = not isinstance(endpoint.host, str)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The chain is not what is checked: the leaf must be the exact one issued.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        with (
            socket.create_connection((host, endpoint.port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=None if is_address else host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError, ValueError):
        return None
    return hashlib.sha256(der).hexdigest() if der else None


def certificate_sha256(pem: str) -> str:
    """SHA-256 of a PEM certificate's DER form (what ``presented_certificate_sha256``
    compares with)."""
    der = ssl.PEM_cert_to_DER_cert(pem.strip() + "\n")
    return hashlib.sha256(der).hexdigest()
