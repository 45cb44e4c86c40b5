"""API keys: what every management caller sends as ``Authorization: Bearer KEY``.

One model in AWS and in the local stack: API Gateway runs the ``api_key_authorizer``
Lambda (chalicelib.routes_keys) before every management route, and ``chalice local``
runs the same function in-process. Keys live in the API keys table as the SHA-256 of
their secret part, so they are created, listed and revoked through the API without a
redeploy; the bootstrap admin key is a Secrets Manager value (``FSNODE_ADMIN_KEY_SECRET``)
that exists before any key does.

A key reads ``fsk_<key id>_<secret>``: the id finds the item with one strongly
consistent GetItem, the secret (32 random bytes, base64url) is compared by hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fsnode_core.api_keys_store import ROLE_ADMIN, ROLE_USER, ROLES, ApiKeyRecord
from fsnode_core.errors import Forbidden, InvalidInput, Unauthorized
from fsnode_core.ids import check_id, new_id

from chalicelib import auth, aws, secret_store, validate
from chalicelib.settings import get_settings

TOKEN_PREFIX = "fsk_"
_TOKEN = re.compile(r"fsk_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")
# The principal the bootstrap key stands for (no table item: it is the secret's value).
BOOTSTRAP_PRINCIPAL = "bootstrap-admin"
_MAX_TOKEN = 4096


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid key belongs to."""

    key_id: str
    role: str


def authenticate(authorization: str) -> Principal:
    """The principal of ``Bearer KEY``; Unauthorized for a missing, unknown, revoked or
    malformed key (one answer for all, so nothing tells a guess which part was wrong)."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN:
        raise Unauthorized("Authorization: Bearer KEY is required")
    settings = get_settings()
    if settings.admin_key_secret and auth.constant_time_equal(
        token, secret_store.secret_value(settings.admin_key_secret)
    ):
        return Principal(BOOTSTRAP_PRINCIPAL, ROLE_ADMIN)
    match = _TOKEN.fullmatch(token)
    record = aws.api_key_store().get(match.group(1)) if match else None
    if (
        match is None
        or record is None
        or record.revoked_at is not None
        or not auth.constant_time_equal(_digest(match.group(2)), record.secret_sha256)
    ):
        raise Unauthorized("the API key is not valid")
    return Principal(record.key_id, record.role)


def require_admin(context: dict[str, Any] | None) -> None:
    """The authorizer already limits key routes to admin keys; checked again here."""
    authorizer = (context or {}).get("authorizer") or {}
    if authorizer.get("role") != ROLE_ADMIN:
        raise Forbidden("only an admin key may manage API keys")


def create(body: dict[str, Any]) -> dict[str, Any]:
    """A new key: ``{name, role?}`` (role ``user`` by default, or ``admin``). The key
    itself is in this answer only."""
    name = validate.string(body, "name", max_len=100, pattern=validate.HEADER_TEXT) or ""
    role = validate.string(body, "role", max_len=16, optional=True) or ROLE_USER
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    secret = secrets.token_urlsafe(32)
    record = ApiKeyRecord(
        key_id=new_id(),
        name=name,
        role=role,
        secret_sha256=_digest(secret),
        created_at=int(time.time()),
    )
    aws.api_key_store().create(record)
    return {**record.to_api(), "key": f"{TOKEN_PREFIX}{record.key_id}_{secret}"}


def list_page(query: dict[str, str] | None) -> dict[str, Any]:
    """A page of keys (never their secrets) and the next page's token."""
    query = query or {}
    limit = validate.query_integer(query, "limit", low=1, high=1000, default=100) or 100
    start = query.get("next_token")
    records, token = aws.api_key_store().list_page(
        limit, check_id(start, "next_token") if start else None
    )
    return {"keys": [record.to_api() for record in records], "next_token": token}


def revoke(key_id: str) -> dict[str, Any]:
    """Revoke a key: refused from the next authorizer run on (API Gateway may answer from
    its authorizer cache for up to the authorizer's TTL). Repeating it answers the same."""
    record = aws.api_key_store().revoke(check_id(key_id, "key_id"), int(time.time()))
    return record.to_api()


def _digest(secret: str) -> str:
    # The secret is 256 random bits, so a plain hash resists guessing as well as a slow one.
    return hashlib.sha256(secret.encode()).hexdigest()
