"""Share-URL signatures: Ed25519, private key only in the control plane.

A share names its key id (``kid``) so keys rotate without breaking live links. The
signed message is a canonical text of the policy fields, so the same signature is
checked by the control plane (share redirect) and by every edge (serving), each
with only the public key.

Optional policy fields, each signed only when present so older links keep verifying:
``nbf`` (not before), ``ip`` (a client CIDR; the verifier is given the client's
address) and ``pfx`` (a prefix share: any file whose ``name`` starts with the
prefix, current version, e.g. an HLS folder). A prefix share's message has no
``f=``/``v=`` lines, so it can never pass as a share of one file, nor the reverse.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fsnode_core.errors import Forbidden

_DOMAIN = b"fsnode-share-v1"
_MAX_FIELD = 512


def _plain(value: str) -> bool:
    """No line breaks or other control characters: the message stays unambiguous."""
    return bool(value) and len(value) <= _MAX_FIELD and value.isprintable()


@dataclass(frozen=True, slots=True)
class SharePolicy:
    """What a share grants: one version of one file until ``expires`` (unix seconds).

    With ``prefix`` set it grants the current version of every file whose name starts
    with it (``version`` is then empty and ``file_id`` is the file being asked for).
    With ``ip`` set only clients inside that network may use it.
    """

    file_id: str
    version: str
    expires: int
    not_before: int | None = None
    ip: str | None = None
    prefix: str | None = None

    def message(self) -> bytes:
        if self.prefix is not None:
            fields = [f"pfx={self.prefix}", f"exp={self.expires}"]
        else:
            fields = [f"f={self.file_id}", f"v={self.version}", f"exp={self.expires}"]
        if self.not_before is not None:
            fields.append(f"nbf={self.not_before}")
        if self.ip is not None:
            fields.append(f"ip={self.ip}")
        return _DOMAIN + b"\n" + "\n".join(fields).encode()

    def to_query(self) -> dict[str, str]:
        query = ({"pfx": self.prefix} if self.prefix is not None else {"v": self.version})
        query["exp"] = str(self.expires)
        if self.not_before is not None:
            query["nbf"] = str(self.not_before)
        if self.ip is not None:
            query["ip"] = self.ip
        return query

    def covers(self, name: str) -> bool:
        """Whether a prefix share reaches a file of this ``name`` (a file share: always)."""
        return self.prefix is None or name.startswith(self.prefix)

    def admits(self, client_ip: str | None) -> bool:
        """Whether ``client_ip`` may use the share (an unknown address never may)."""
        if self.ip is None:
            return True
        if client_ip is None:
            return False
        try:
            return ipaddress.ip_address(client_ip) in ipaddress.ip_network(self.ip)
        except ValueError:
            return False


def canonical_network(cidr: str) -> str:
    """A CIDR in canonical text (host bits cleared); ValueError when it is not one."""
    return str(ipaddress.ip_network(cidr.strip(), strict=False))


def private_key_from_seed(seed: str) -> Ed25519PrivateKey:
    """The Ed25519 key derived from a secret string (Secrets Manager generates strings)."""
    if len(seed) < 32:
        raise ValueError("a signing seed needs at least 32 characters")
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


def public_key_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def parse_keyring(secret_string: str) -> tuple[str, dict[str, Ed25519PrivateKey]]:
    """``{"active": KID, KID: SEED, ...}`` into the active kid and every private key."""
    data = json.loads(secret_string)
    active = data.pop("active")
    keys = {kid: private_key_from_seed(seed) for kid, seed in data.items()}
    if active not in keys:
        raise ValueError(f"active signing key {active!r} is not in the keyring")
    return active, keys


class ShareSigner:
    """Mints signatures with the active key of a keyring."""

    def __init__(self, kid: str, key: Ed25519PrivateKey) -> None:
        self.kid = kid
        self._key = key

    def sign(self, policy: SharePolicy) -> dict[str, str]:
        """Query parameters (policy fields, ``kid``, ``sig``) that carry the share."""
        sig = _b64(self._key.sign(policy.message()))
        return {**policy.to_query(), "kid": self.kid, "sig": sig}


class ShareVerifier:
    """Checks share signatures with public keys only."""

    def __init__(self, public_keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = dict(public_keys)

    @classmethod
    def from_pems(cls, pems: Mapping[str, str]) -> ShareVerifier:
        keys: dict[str, Ed25519PublicKey] = {}
        for kid, pem in pems.items():
            key = serialization.load_pem_public_key(pem.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"share key {kid!r} is not an Ed25519 public key")
            keys[kid] = key
        return cls(keys)

    def verify(
        self, file_id: str, query: Mapping[str, str], now: float | None = None, *,
        client_ip: str | None = None, allow_prefix: bool = False,
    ) -> SharePolicy:
        """The policy a query proves for ``file_id``; raises Forbidden when it proves none.

        An ``ip``-bound share needs the client's address in ``client_ip``. A prefix share
        is refused unless ``allow_prefix``: the caller then owes the check
        ``policy.covers(name)`` once it knows the file's name (fail closed otherwise).
        """
        policy = policy_from_query(file_id, query)
        kid = query.get("kid", "")
        key = self._keys.get(kid)
        if key is None:
            raise Forbidden("share URL names an unknown signing key", kid=kid[:_MAX_FIELD])
        try:
            key.verify(_unb64(query.get("sig", "")), policy.message())
        except (InvalidSignature, ValueError) as exc:
            raise Forbidden("share URL signature is not valid") from exc
        moment = time.time() if now is None else now
        if moment >= policy.expires:
            raise Forbidden("share URL has expired", expired_at=policy.expires)
        if policy.not_before is not None and moment < policy.not_before:
            raise Forbidden("share URL is not valid yet", not_before=policy.not_before)
        if not policy.admits(client_ip):
            raise Forbidden("share URL is not valid from this address")
        if policy.prefix is not None and not allow_prefix:
            raise Forbidden("share URL covers a prefix, which this server cannot check")
        return policy


def policy_from_query(file_id: str, query: Mapping[str, str]) -> SharePolicy:
    """Parse the policy fields of a share query; malformed fields are Forbidden."""
    prefix = query.get("pfx")
    version = query.get("v", "")
    if prefix is not None:
        if not _plain(prefix) or "v" in query:
            raise Forbidden("share URL has no valid prefix")
        version = ""
    elif not _plain(version):
        raise Forbidden("share URL has no valid version")
    ip = query.get("ip")
    if ip is not None and (not _plain(ip) or "/" not in ip):
        raise Forbidden("share URL has a malformed address range")
    try:
        expires = int(query.get("exp", ""))
        nbf_raw = query.get("nbf")
        not_before = int(nbf_raw) if nbf_raw is not None else None
    except ValueError as exc:
        raise Forbidden("share URL has a malformed expiry") from exc
    return SharePolicy(file_id=file_id, version=version, expires=expires, not_before=not_before,
                       ip=ip, prefix=prefix)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or len(text) > _MAX_FIELD:
        raise ValueError("bad signature encoding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("bad signature encoding") from exc


