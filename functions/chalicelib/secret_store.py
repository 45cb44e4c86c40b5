"""Secrets Manager values, cached briefly so rotation takes effect within a minute."""

from __future__ import annotations

import threading
import time

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fsnode_core.errors import Unavailable
from fsnode_core.signing import ShareSigner, ShareVerifier, parse_keyring, public_key_pem

from chalicelib import aws

_TTL_SECONDS = 60.0
_cache: dict[str, tuple[float, str]] = {}
_lock = threading.Lock()


def secret_value(secret_id: str) -> str:
    """The secret's string value."""
    if not secret_id:
        raise Unavailable("a required secret is not configured")
    now = time.monotonic()
    with _lock:
        hit = _cache.get(secret_id)
        if hit and now - hit[0] < _TTL_SECONDS:
            return hit[1]
    try:
        value = str(
            aws.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
        )
    except (ClientError, BotoCoreError) as exc:
        raise Unavailable("a secret could not be read") from exc
    with _lock:
        _cache[secret_id] = (now, value)
    return value


def clear() -> None:
    """Drop cached values."""
    with _lock:
        _cache.clear()


aws.on_reset(clear)


def keyring(secret_id: str) -> tuple[str, dict[str, Ed25519PrivateKey]]:
    """The active key id and all signing keys."""
    return parse_keyring(secret_value(secret_id))


def share_public_keys(secret_id: str) -> dict[str, str]:
    """``{kid: public PEM}`` for every key in the ring (edges verify with these)."""
    _, keys = keyring(secret_id)
    return {kid: public_key_pem(key) for kid, key in sorted(keys.items())}


def signer(secret_id: str) -> ShareSigner:
    """A signer with the active key."""
    active, keys = keyring(secret_id)
    return ShareSigner(active, keys[active])


def verifier(secret_id: str) -> ShareVerifier:
    """A verifier over the public half of every key in the ring."""
    _, keys = keyring(secret_id)
    return ShareVerifier({kid: key.public_key() for kid, key in keys.items()})
