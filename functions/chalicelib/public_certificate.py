"""The edges' publicly trusted certificate (issue 19): one ACM exportable public
certificate for ``*.FSNODE_EDGE_DOMAIN``, exported by the ``refresh_public_certificate``
function into a Secrets Manager secret (encrypted at rest with KMS), and handed to
registered edges over their authenticated channel (``GET /nodes/{id}/public-certificate``).

ACM renews the certificate before it expires; the scheduled refresh exports the new
one (its serial changes), heartbeats carry the serial, and each edge fetches and swaps
it for new handshakes without touching open connections. The private key is never
logged and never leaves these two paths.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives import serialization
from fsnode_core.errors import NotFound, Unavailable

from chalicelib import aws, invoke, public_names, secret_store
from chalicelib.observability import logger
from chalicelib.settings import get_settings

# What the secret holds (JSON): the bundle edges get, and ``serial`` to compare with.
FIELDS = ("serial", "not_after", "certificate", "chain", "private_key")


def serial() -> str | None:
    """The serial of the exported certificate edges should serve (heartbeats carry it),
    exporting it first if nothing was; None without public names."""
    stored = _stored()
    return str(stored["serial"]) if stored else None


def bundle() -> dict[str, Any]:
    """``{name, serial, not_after, certificate, chain, private_key}`` for an edge."""
    stored = _stored()
    if stored is None:
        raise NotFound("this fleet has no public names (no domain is set)")
    return {"name": f"*.{get_settings().edge_domain}", **stored}


def refresh(event: dict[str, Any]) -> dict[str, Any]:
    """The ``refresh_public_certificate`` function: export the certificate again when
    ACM holds another one (a renewal) than the secret does. Never answers the key."""
    settings = get_settings()
    if not public_names.enabled() or not settings.public_certificate_arn:
        return {"changed": False, "serial": None}
    acm = aws.client("acm")
    try:
        described = acm.describe_certificate(
            CertificateArn=settings.public_certificate_arn)["Certificate"]
        current = _read_secret()
        serial_now = str(described.get("Serial") or "")
        if current is not None and current.get("serial") == serial_now and serial_now:
            return {"changed": False, "serial": serial_now}
        passphrase = secrets.token_urlsafe(24)
        exported = acm.export_certificate(  # the key comes encrypted with the passphrase
            CertificateArn=settings.public_certificate_arn, Passphrase=passphrase.encode())
    except (ClientError, BotoCoreError) as exc:
        raise Unavailable("the public certificate could not be exported") from exc
    key = serialization.load_pem_private_key(exported["PrivateKey"].encode(),
                                             password=passphrase.encode())
    stored = {
        "serial": serial_now,
        "not_after": described["NotAfter"].isoformat() if described.get("NotAfter") else "",
        "certificate": exported["Certificate"],
        "chain": exported.get("CertificateChain") or "",
        "private_key": key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode(),
    }
    try:
        aws.client("secretsmanager").put_secret_value(
            SecretId=settings.public_certificate_secret, SecretString=json.dumps(stored))
    except (ClientError, BotoCoreError) as exc:
        raise Unavailable("the public certificate could not be stored") from exc
    secret_store.clear()
    logger.info("public certificate exported", extra={"serial": serial_now,
                                                       "not_after": stored["not_after"]})
    return {"changed": True, "serial": serial_now}


def _stored() -> dict[str, Any] | None:
    settings = get_settings()
    if not public_names.enabled() or not settings.public_certificate_secret:
        return None
    stored = _read_secret(cached=True)
    if stored is None:
        # Nothing exported yet (a new stack): the function that may export does it now.
        invoke.call(settings.refresh_public_certificate_function, {})
        secret_store.clear()
        stored = _read_secret(cached=True)
    return stored


def _read_secret(cached: bool = False) -> dict[str, Any] | None:
    secret = get_settings().public_certificate_secret
    if cached:
        raw = secret_store.secret_value(secret)
    else:
        try:
            raw = aws.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
        except (ClientError, BotoCoreError) as exc:
            raise Unavailable("the public certificate secret could not be read") from exc
    try:
        value = json.loads(raw)
    except ValueError:
        return None  # the placeholder the stack creates
    if not isinstance(value, dict) or not all(value.get(f) for f in FIELDS if f != "chain"):
        return None
    return {field: value.get(field, "") for field in FIELDS}
