"""SHA-256 digests as the published objects carry them (hex, concatenated), and the
``ETag`` a file version has on every edge."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

DIGEST_HEX = 64  # one SHA-256 in hex


def entity_tag(file_id: str, version: str, origin_etag: str, size: int) -> str:
    """The strong ``ETag`` every edge (and the folder listing) gives a file version: the
    same on every edge, different for every version (RFC 9110 section 8.8.3)."""
    seed = f"{file_id}\n{version}\n{origin_etag}\n{size}"
    return '"' + hashlib.sha256(seed.encode()).hexdigest()[:32] + '"'


def join_digests(digests: Iterable[str]) -> str:
    """Hex digests as the one concatenated string the manifest carries."""
    return "".join(digests)


def split_digests(joined: str) -> list[str]:
    return [joined[i : i + DIGEST_HEX] for i in range(0, len(joined), DIGEST_HEX)]


def chunks_digest(chunk_sha256: str | Iterable[str]) -> str:
    """``chunks_sha256``: SHA-256 over the concatenated raw chunk digests (what ``fsnode
    sync`` compares, with the size and chunk size, against a listing)."""
    joined = chunk_sha256 if isinstance(chunk_sha256, str) else join_digests(chunk_sha256)
    return hashlib.sha256(bytes.fromhex(joined)).hexdigest()
