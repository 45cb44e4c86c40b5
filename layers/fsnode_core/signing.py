"""Share signatures, v2: Ed25519, private key only in the control plane.

Two kinds of share (docs/PROTOCOL.md, "Share signatures"):

- A **file share** covers one file, whatever its current version, so uploading again
  to its path keeps the link working. Signed message
  ``fsnode-share-v2\\nf={file_id}\\nexp={E}[\\nnbf={N}][\\nip={CIDR}]``, carried in the
  query as ``exp[&nbf][&ip]&kid&sig``. The share redirect adds an UNSIGNED ``v`` (the
  version current then): an edge serves a pinned request only while that version is
  current, so a player that began on version N never gets N+1's bytes.
- A **folder share** carries a token in the URL path (``/t/{TOKEN}/{folder}...``), so
  the relative URLs of HLS and DASH playlists resolve under it (``folder_tokens``).

A share has exactly one valid spelling: numbers are canonical ASCII digits
(``0|[1-9][0-9]*``), signatures unpadded base64url that re-encode to themselves, CIDRs
in canonical form, no parameter twice and none the share does not define. ``kid``
names the key, so keys rotate without breaking live links. Links signed by v1
(``fsnode-share-v1``) do not verify.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fsnode_core.errors import Forbidden

DOMAIN = "fsnode-share-v2"
# Canonical unsigned integers (unix seconds): no sign, no leading zero, at most 16 digits.
_NUMBER = re.compile(r"0|[1-9][0-9]{0,15}")
_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ID = re.compile(r"[0-9a-f]{32}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAX_CIDR = 64
# Query parameters a file share may carry; ``v`` is the unsigned version pin, ``vt``
# the redirect's version ticket (``fsnode_core.version_tickets``, signed on its own).
FILE_SHARE_PARAMS = frozenset({"exp", "nbf", "ip", "kid", "sig", "v", "vt"})
_SIGNED_PARAMS = ("exp", "nbf", "ip")

Query = Mapping[str, str] | Iterable[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class SharePolicy:
    """What a verified file share grants: the file until ``expires`` (unix seconds),
    optionally from ``not_before`` and only to clients in ``ip``. ``version`` is the
    redirect's unsigned pin (None: the current version); ``ticket`` its version ticket,
    not checked here (``fsnode_core.version_tickets.open_ticket``)."""

    file_id: str
    expires: int
    not_before: int | None = None
    ip: str | None = None
    version: str | None = None
    ticket: str | None = None

    def message(self) -> bytes:
        """The signed text (the pin is not part of it)."""
        lines = [DOMAIN, f"f={self.file_id}", f"exp={self.expires}"]
        lines += _optional_lines(self.not_before, self.ip)
        return "\n".join(lines).encode()

    def to_query(self) -> dict[str, str]:
        """The signed fields as query parameters (``kid``/``sig``/``v`` not included)."""
        query = {"exp": str(self.expires)}
        if self.not_before is not None:
            query["nbf"] = str(self.not_before)
        if self.ip is not None:
            query["ip"] = self.ip
        return query

    def admits(self, client_ip: str | None) -> bool:
        """Whether ``client_ip`` may use the share (an unknown address never may, when
        the share names a network)."""
        return admits(self.ip, client_ip)


def admits(cidr: str | None, client_ip: str | None) -> bool:
    """Whether ``client_ip`` is inside ``cidr`` (no network: everyone). An IPv4 client
    seen as ``::ffff:a.b.c.d`` (a dual-stack listener) matches IPv4 networks."""
    if cidr is None:
        return True
    if client_ip is None:
        return False
    try:
        address = ipaddress.ip_address(client_ip.split("%", 1)[0])
        network = ipaddress.ip_network(cidr)
    except ValueError:
        return False
    if (
        isinstance(address, ipaddress.IPv6Address)
        and address.ipv4_mapped is not None
        and network.version == 4
    ):
        address = address.ipv4_mapped
    elif isinstance(address, ipaddress.IPv4Address) and network.version == 6:
        address = ipaddress.IPv6Address(f"::ffff:{address}")
    return address.version == network.version and address in network


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
    if not all(_KID.fullmatch(kid) for kid in keys):
        raise ValueError("key ids are 1..64 characters of [A-Za-z0-9_-]")
    return active, keys


class ShareSigner:
    """Mints signatures with the active key of a keyring."""

    def __init__(self, kid: str, key: Ed25519PrivateKey) -> None:
        if not _KID.fullmatch(kid):
            raise ValueError("key ids are 1..64 characters of [A-Za-z0-9_-]")
        self.kid = kid
        self._key = key

    def sign(self, policy: SharePolicy) -> dict[str, str]:
        """The query (signed fields, ``kid``, ``sig``) that carries a file share."""
        _check_policy_fields(policy.expires, policy.not_before, policy.ip)
        return {
            **policy.to_query(),
            "kid": self.kid,
            "sig": b64url(self.sign_bytes(policy.message())),
        }

    def sign_bytes(self, message: bytes) -> bytes:
        """A raw signature (folder tokens sign their own payload)."""
        return self._key.sign(message)


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
        self, file_id: str, query: Query, now: float | None = None, *, client_ip: str | None = None
    ) -> SharePolicy:
        """The policy a file share's query proves for ``file_id``; Forbidden when it proves
        none: a field twice, a field it does not define, a non-canonical spelling, a bad
        or unknown-key signature, outside its time window or its client network."""
        fields = share_query_fields(query)
        policy = SharePolicy(
            file_id=file_id,
            expires=_number(fields.get("exp"), "exp"),
            not_before=_optional_number(fields.get("nbf"), "nbf"),
            ip=_cidr(fields.get("ip")),
            version=_pin(fields.get("v")),
            ticket=fields.get("vt"),
        )
        if policy.ticket is not None and policy.version is None:
            raise Forbidden("share URL has a version ticket without a version pin")
        self.check_signature(fields.get("kid", ""), fields.get("sig", ""), policy.message())
        check_window(policy.expires, policy.not_before, now)
        if not policy.admits(client_ip):
            raise Forbidden("share URL is not valid from this address")
        return policy

    def check_signature(self, kid: str, sig: str, message: bytes) -> None:
        """Forbidden unless ``sig`` (canonical base64url) is ``kid``'s signature."""
        key = self._keys.get(kid) if _KID.fullmatch(kid) else None
        if key is None:
            raise Forbidden("share URL names an unknown signing key", kid=kid[:64])
        try:
            key.verify(unb64url(sig), message)
        except (InvalidSignature, ValueError) as exc:
            raise Forbidden("share URL signature is not valid") from exc


def share_query_fields(query: Query) -> dict[str, str]:
    """A file share's parameters, each once and each defined; Forbidden otherwise."""
    pairs = query.items() if isinstance(query, Mapping) else query
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name not in FILE_SHARE_PARAMS:
            raise Forbidden(
                "share URL has a parameter it does not define", parameter=str(name)[:32]
            )
        if name in fields:
            raise Forbidden("share URL repeats a parameter", parameter=name)
        fields[name] = value
    return fields


def check_window(expires: int, not_before: int | None, now: float | None = None) -> None:
    """Forbidden outside ``not_before <= now < expires``."""
    moment = time.time() if now is None else now
    if moment >= expires:
        raise Forbidden("share URL has expired", expired_at=expires)
    if not_before is not None and moment < not_before:
        raise Forbidden("share URL is not valid yet", not_before=not_before)


def canonical_number(text: str, what: str) -> int:
    """A canonical decimal; Forbidden for any other spelling."""
    if not _NUMBER.fullmatch(text):
        raise Forbidden(f"share URL has a malformed {what}")
    return int(text)


def canonical_cidr(text: str) -> str:
    """A CIDR in its canonical spelling; Forbidden for any other."""
    try:
        ok = len(text) <= _MAX_CIDR and "/" in text and canonical_network(text) == text
    except ValueError:
        ok = False
    if not ok:
        raise Forbidden("share URL has a malformed address range")
    return text


def check_kid(kid: str) -> str:
    if not _KID.fullmatch(kid):
        raise Forbidden("share URL has a malformed key id")
    return kid


def b64url(raw: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """Bytes of canonical unpadded base64url: ValueError for padding, other alphabets or
    trailing bits that re-encode differently (so each value has one spelling)."""
    if not text or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not canonical unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(raw) != text:
        raise ValueError("not canonical unpadded base64url")
    return raw


def _optional_lines(not_before: int | None, ip: str | None) -> list[str]:
    lines = []
    if not_before is not None:
        lines.append(f"nbf={not_before}")
    if ip is not None:
        lines.append(f"ip={ip}")
    return lines


def _check_policy_fields(expires: int, not_before: int | None, ip: str | None) -> None:
    """What a signer refuses to sign: a spelling no verifier would take."""
    for value in (expires, not_before):
        if value is not None and (
            not isinstance(value, int) or value < 0 or not _NUMBER.fullmatch(str(value))
        ):
            raise ValueError("share times are non-negative integers of at most 16 digits")
    if ip is not None and canonical_network(ip) != ip:
        raise ValueError("a share's ip must be a canonical CIDR")


def _number(value: str | None, name: str) -> int:
    if value is None:
        raise Forbidden(f"share URL has no {name}")
    return canonical_number(value, name)


def _optional_number(value: str | None, name: str) -> int | None:
    return None if value is None else canonical_number(value, name)


def _cidr(value: str | None) -> str | None:
    return None if value is None else canonical_cidr(value)


def _pin(value: str | None) -> str | None:
    if value is not None and not _ID.fullmatch(value):
        raise Forbidden("share URL has a malformed version pin")
    return value
