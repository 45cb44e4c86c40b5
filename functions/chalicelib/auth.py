"""Who may call node routes: node credentials (Bearer) and join tokens.

Management routes are guarded by the API-key authorizer (chalicelib.api_keys and
chalicelib.routes_keys), in AWS and in the local stack alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from cryptography.hazmat.primitives import serialization
from fsnode_core.errors import (
    NODE_DEAD_REASON,
    NODE_DRAINED_REASON,
    Forbidden,
    Gone,
    Unauthorized,
    Unavailable,
)
from fsnode_core.models import (
    NODE_ACTIVE,
    NODE_DEAD,
    NODE_DRAINED,
    NODE_DRAINING,
    NODE_PENDING,
    NODE_RETIRED,
    NodeRecord,
)

from chalicelib import aws, secret_store
from chalicelib.settings import get_settings


def check_join_token(token: object) -> None:
    """The join token must equal the secret's value (missing or not text: 401 too)."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise Unauthorized("a valid join_token is required")
    expected = secret_store.secret_value(get_settings().join_token_secret)
    if not constant_time_equal(token, expected):
        raise Unauthorized("join token is not valid")


_CREDENTIAL_DOMAIN = b"fsnode-node-credential-v1"


def credential_kid() -> str:
    """The signing key id node credentials are derived with now (the keyring's active)."""
    active, _ = secret_store.keyring(get_settings().signing_key_secret)
    return active


def node_credential(node_id: str, kid: str) -> str:
    """A node's Bearer credential: HMAC of its id under a control-plane-only key.

    Deterministic, so a retried register returns the same credential without storing
    it anywhere; unforgeable without the keyring (edges hold only public keys and the
    join token, so one node cannot compute another's). The key is the named signing
    key's private bytes, domain-separated; rotating the ring leaves existing
    credentials valid because the nodes table checks a hash, not the derivation.
    """
    _, keys = secret_store.keyring(get_settings().signing_key_secret)
    if kid not in keys:
        raise Unavailable("the key this credential was derived with is gone; register again")
    raw = keys[kid].private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    key = hmac.new(raw, _CREDENTIAL_DOMAIN, hashlib.sha256).digest()
    mac = hmac.new(key, node_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def credential_hash(credential: str) -> str:
    """What the nodes table keeps instead of the credential itself."""
    return hashlib.sha256(credential.encode()).hexdigest()


# The node statuses each node route serves (docs/PROTOCOL.md, "Node status"). A node
# that has not proved its endpoint yet may only beat (which proves it) and renew; a
# draining one beats, renews and keeps its public certificate (it finishes its
# streams) but takes no work and reports none: nothing it says changes what others
# serve. A retired one (dead, drained) nothing: 410.
MAY_BEAT = frozenset({NODE_PENDING, NODE_ACTIVE, NODE_DRAINING})  # heartbeat, renew
MAY_SERVE = frozenset({NODE_ACTIVE, NODE_DRAINING})  # the public certificate
MAY_WORK = frozenset({NODE_ACTIVE})  # work handed out, work reports


def require_node(headers: Mapping[str, str], node_id: str, allowed: frozenset[str]) -> NodeRecord:
    """The node whose Bearer credential this is; Unauthorized for any other credential,
    Gone when the node is out of the fleet, Forbidden when its status is not one of
    ``allowed``."""
    digest = _bearer_hash(headers)
    node = aws.node_registry().get(node_id)
    # Same answer for unknown node and wrong credential: no node-id probing.
    if node is None or not constant_time_equal(digest, node.credential_sha256):
        raise Unauthorized("credential is not valid for this node", node_id=node_id)
    if node.status in NODE_RETIRED:
        message, reason = _RETIRED[node.status]
        raise Gone(message, node_id=node_id, node_status=node.status, reason=reason)
    if node.status not in allowed:
        raise Forbidden(
            _REFUSED.get(node.status, f"a {node.status} node may not do this"),
            node_id=node_id,
            node_status=node.status,
        )
    return node


_RETIRED = {
    NODE_DEAD: ("this node was declared dead: register again", NODE_DEAD_REASON),
    NODE_DRAINED: (
        "this node was drained and is out of the fleet: it must not come back",
        NODE_DRAINED_REASON,
    ),
}
_REFUSED = {
    NODE_PENDING: "this node has not shown yet that it serves its certificate at its "
    "endpoint (a heartbeat checks)",
    NODE_DRAINING: "a draining node takes no work and reports none",
}


def _bearer_hash(headers: Mapping[str, str]) -> str:
    scheme, _, credential = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized("Authorization: Bearer CREDENTIAL is required")
    return credential_hash(credential.strip())


def constant_time_equal(a: str, b: str) -> bool:
    """Compare secrets without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())
