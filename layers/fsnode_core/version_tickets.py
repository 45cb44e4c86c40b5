"""Version tickets: the control plane's signed word that a version was current, with
what an edge needs to answer for it before it has read the version's manifest.

A file share's redirect pins the version current then (``v``). It also carries
``vt={b64url(payload)}.{b64url(sig)}``, where ``sig`` is the Ed25519 signature (the
share keyring's active key) of ``fsnode-version-v1\\n`` + payload, and the payload is
``f={file_id}\\nv={version}\\nat={T}\\nsize={S}\\ncs={chunk size}\\netag={ETag}\\n``
``lm={last modified}\\npath={path}\\ntype={content type}\\nfx={file expiry|0}\\nkid={K}``
(UTF-8, this order; ``fx`` is the file's ``expires_at``, 0 for none).

``at`` is when the control plane read the version as current: a ticket is the same
evidence as a head read then, so an edge honours it for as long as it would trust a
head read at ``at`` (``FSNODE_MANIFEST_MAX_AGE``), and never past the file's expiry.
With it the edge sends its first bytes after one S3 request (the data range) instead
of three (head, manifest, data); the manifest, read meanwhile, still checks every chunk
before a chunk's last byte goes out, and must agree with the ticket. Parsed strictly,
a ticket has one spelling.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsnode_core.errors import Forbidden
from fsnode_core.signing import (
    ShareSigner,
    ShareVerifier,
    b64url,
    canonical_number,
    check_kid,
    unb64url,
)

DOMAIN = "fsnode-version-v1"
MAX_TICKET = 8192
_FIELDS = ("f", "v", "at", "size", "cs", "etag", "lm", "path", "type", "fx", "kid")
_NUMBERS = frozenset({"at", "size", "cs", "lm", "fx"})


@dataclass(frozen=True, slots=True)
class VersionTicket:
    """A version the control plane saw current at ``issued`` (unix seconds), with the
    fields of its manifest that an answer's headers need."""

    file_id: str
    version: str
    issued: int
    size: int
    chunk_size: int
    etag: str
    last_modified: int
    path: str
    content_type: str
    # The file's expiry (unix seconds), 0 for none.
    file_expires: int
    kid: str

    def honoured_until(self, max_age: float) -> float:
        """Until when an edge that trusts a head read for ``max_age`` seconds may
        answer from this ticket (unix seconds)."""
        until = self.issued + max_age
        return min(until, self.file_expires) if self.file_expires else until

    def payload(self) -> bytes:
        values = (
            self.file_id,
            self.version,
            self.issued,
            self.size,
            self.chunk_size,
            self.etag,
            self.last_modified,
            self.path,
            self.content_type,
            self.file_expires,
            self.kid,
        )
        lines = (f"{name}={value}" for name, value in zip(_FIELDS, values, strict=True))
        return "\n".join(lines).encode()

    def message(self) -> bytes:
        return f"{DOMAIN}\n".encode() + self.payload()


def mint_ticket(signer: ShareSigner, ticket: VersionTicket) -> str:
    """The ``vt`` value for ``ticket`` (its ``kid`` must be the signer's)."""
    if ticket.kid != signer.kid:
        raise ValueError("a ticket names the key that signs it")
    for text in (ticket.etag, ticket.path, ticket.content_type):
        if "\n" in text:
            raise ValueError("ticket fields are single lines")
    return f"{b64url(ticket.payload())}.{b64url(signer.sign_bytes(ticket.message()))}"


def open_ticket(verifier: ShareVerifier, token: str, file_id: str, version: str) -> VersionTicket:
    """The ticket ``token`` proves for ``file_id`` at ``version``; Forbidden when it
    proves none (malformed, another file or version, a bad signature). How old it may
    be is the caller's bound."""
    if len(token) > MAX_TICKET or token.count(".") != 1:
        raise Forbidden("share URL has a malformed version ticket")
    encoded, sig = token.split(".")
    try:
        payload = unb64url(encoded)
        text = payload.decode("utf-8")
    except ValueError as exc:
        raise Forbidden("share URL has a malformed version ticket") from exc
    lines = text.split("\n")
    names = tuple(line.partition("=")[0] for line in lines)
    if names != _FIELDS or any("=" not in line for line in lines):
        raise Forbidden("share URL has a malformed version ticket")
    fields = {name: line.partition("=")[2] for name, line in zip(names, lines, strict=True)}
    numbers = {name: canonical_number(fields[name], "version ticket") for name in _NUMBERS}
    ticket = VersionTicket(
        file_id=fields["f"],
        version=fields["v"],
        issued=numbers["at"],
        size=numbers["size"],
        chunk_size=numbers["cs"],
        etag=fields["etag"],
        last_modified=numbers["lm"],
        path=fields["path"],
        content_type=fields["type"],
        file_expires=numbers["fx"],
        kid=check_kid(fields["kid"]),
    )
    if ticket.payload() != payload or ticket.chunk_size <= 0:
        raise Forbidden("share URL has a malformed version ticket")
    if (ticket.file_id, ticket.version) != (file_id, version):
        raise Forbidden("the version ticket is for another file or version")
    verifier.check_signature(ticket.kid, sig, ticket.message())
    return ticket
