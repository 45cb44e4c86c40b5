"""The AWS attestation of a registering edge: a signed ``sts:GetCallerIdentity``.

The edge signs (SigV4, its role's credentials) a GetCallerIdentity request and sends
it unsent, in its register body; the control plane sends it to STS and reads back
who signed it, as Vault's AWS auth method does. The request carries, signed, the
SHA-256 of the CSR's public key (``BINDING_HEADER``): a captured request attests
only a registration of that key, which its thief does not hold.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

BODY = "Action=GetCallerIdentity&Version=2011-06-15"
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
BINDING_HEADER = "X-Fsnode-Node-Key"
# The headers the control plane forwards to STS (names compared in lower case).
FORWARDED_HEADERS = ("authorization", "content-type", "x-amz-date", "x-amz-security-token",
                     BINDING_HEADER.lower())


def key_binding(public_key: PublicKeyTypes) -> str:
    """SHA-256 (hex) of a public key's DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()
