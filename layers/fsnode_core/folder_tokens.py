"""Folder shares: a signed token in the URL path, so HLS and DASH relative URLs work.

``share_url = {api}/t/{TOKEN}/{P}`` where ``P`` is a folder (a path followed by ``/``,
or ``""`` for everything); a file below it is ``share_url`` + its relative path, which
is exactly how a player resolves a playlist's relative URLs. No cookie, no rewriting.

``TOKEN = {b64url(payload)}.{b64url(sig)}`` with
``payload = pfx={P}\\nexp={E}[\\nnbf={N}][\\nip={CIDR}]\\nkid={K}`` (UTF-8) and ``sig`` the
Ed25519 signature of ``fsnode-share-v2\\n`` + payload. A token is parsed strictly and
must re-serialize byte for byte, so it has one spelling.

A token covers its folder by whole segments (``media/trailer/`` does not cover
``media/trailer2/``). The path after the token is decoded once and must be a valid
path (``fsnode_core.paths``): ``.``/``..`` segments (plain or percent-encoded), ``//``,
control characters and an encoded ``/`` are refused with 400, a valid path outside the
folder with 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsnode_core.errors import Forbidden, InvalidInput
from fsnode_core.paths import folder_problem, from_url_path, is_under, path_problem
from fsnode_core.signing import (
    DOMAIN,
    ShareSigner,
    ShareVerifier,
    admits,
    b64url,
    canonical_cidr,
    canonical_number,
    check_kid,
    check_window,
    unb64url,
)

MAX_TOKEN = 4096


@dataclass(frozen=True, slots=True)
class FolderPolicy:
    """What a verified folder token grants: the current version of every file under
    ``prefix`` until ``expires``, optionally from ``not_before`` and only to ``ip``."""

    prefix: str
    expires: int
    kid: str
    not_before: int | None = None
    ip: str | None = None

    def payload(self) -> bytes:
        """The token's first part: the canonical text of the policy."""
        lines = [f"pfx={self.prefix}", f"exp={self.expires}"]
        if self.not_before is not None:
            lines.append(f"nbf={self.not_before}")
        if self.ip is not None:
            lines.append(f"ip={self.ip}")
        lines.append(f"kid={self.kid}")
        return "\n".join(lines).encode("utf-8")

    def message(self) -> bytes:
        """What the signature covers (domain-separated from file shares)."""
        return DOMAIN.encode() + b"\n" + self.payload()

    def covers(self, path: str) -> bool:
        """Whether the file at ``path`` lies in the folder (by whole segments)."""
        return self.prefix == "" or is_under(path, self.prefix)

    def admits(self, client_ip: str | None) -> bool:
        return admits(self.ip, client_ip)


def mint_folder_token(
    signer: ShareSigner,
    prefix: str,
    expires: int,
    *,
    not_before: int | None = None,
    ip: str | None = None,
) -> str:
    """A token for ``prefix`` signed with the signer's active key (ValueError for a
    policy no verifier would take)."""
    problem = folder_problem(prefix)
    if problem is not None:
        raise ValueError(problem)
    policy = FolderPolicy(
        prefix=prefix, expires=expires, kid=signer.kid, not_before=not_before, ip=ip
    )
    payload = policy.payload()
    try:
        canonical = parse_payload(payload) == policy  # the one spelling a verifier accepts
    except Forbidden as exc:
        raise ValueError(exc.message) from exc
    if not canonical:
        raise ValueError("the policy has no canonical spelling")
    return f"{b64url(payload)}.{b64url(signer.sign_bytes(policy.message()))}"


def parse_payload(payload: bytes) -> FolderPolicy:
    """A token's payload, parsed strictly; Forbidden unless canonical."""
    try:
        lines = payload.decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise Forbidden("share token is not UTF-8") from exc
    fields: dict[str, str] = {}
    order = ["pfx", "exp", "nbf", "ip", "kid"]
    for line in lines:
        name, sep, value = line.partition("=")
        if not sep or name not in order:
            raise Forbidden("share token has a field it does not define")
        order = order[order.index(name) + 1 :]  # fields come once, in this order
        fields[name] = value
    if not {"pfx", "exp", "kid"} <= fields.keys():
        raise Forbidden("share token lacks a field")
    if folder_problem(fields["pfx"]) is not None:
        raise Forbidden("share token names no valid folder")
    nbf = fields.get("nbf")
    policy = FolderPolicy(
        prefix=fields["pfx"],
        expires=canonical_number(fields["exp"], "expiry"),
        kid=check_kid(fields["kid"]),
        not_before=None if nbf is None else canonical_number(nbf, "start time"),
        ip=None if fields.get("ip") is None else canonical_cidr(fields["ip"]),
    )
    if policy.payload() != payload:
        raise Forbidden("share token is not in its canonical form")
    return policy


def verify_folder_token(
    verifier: ShareVerifier, token: str, now: float | None = None, *, client_ip: str | None = None
) -> FolderPolicy:
    """The policy ``token`` proves; Forbidden for a malformed, forged, expired, not yet
    valid token, or a client outside its network."""
    if len(token) > MAX_TOKEN or token.count(".") != 1:
        raise Forbidden("share token is malformed")
    encoded_payload, encoded_sig = token.split(".")
    try:
        payload = unb64url(encoded_payload)
    except ValueError as exc:
        raise Forbidden("share token is malformed") from exc
    policy = parse_payload(payload)
    verifier.check_signature(policy.kid, encoded_sig, policy.message())
    check_window(policy.expires, policy.not_before, now)
    if not policy.admits(client_ip):
        raise Forbidden("share URL is not valid from this address")
    return policy


def folder_path(policy: FolderPolicy, raw_path: str) -> str:
    """The path asked for below the folder: ``""`` for the folder itself, else the file's
    path relative to the folder. ``raw_path`` is the URL path after ``/t/{TOKEN}/``,
    still percent-encoded. InvalidInput (400) for a path that breaks the path rules,
    Forbidden (403) for a valid path outside the folder."""
    path = from_url_path(raw_path)
    if path == policy.prefix:
        return ""
    problem = path_problem(path)
    if problem is not None:
        raise InvalidInput(f"the shared path is not valid: {problem}", field="path")
    if not policy.covers(path):
        raise Forbidden("the path is outside the shared folder")
    return path[len(policy.prefix) :]


def open_folder_share(
    verifier: ShareVerifier,
    token: str,
    raw_path: str,
    now: float | None = None,
    *,
    client_ip: str | None = None,
) -> tuple[FolderPolicy, str]:
    """Verify ``token`` and check the path after it: ``(policy, relative path)``
    (``""``: the folder itself). The full path is ``policy.prefix + relative``."""
    policy = verify_folder_token(verifier, token, now, client_ip=client_ip)
    return policy, folder_path(policy, raw_path)
