"""SHA-256 of a local file as the control plane lays it out: chunks, parts, content."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fsnode_core.digests import chunks_digest


def file_hashes(path: Path, chunk_size: int, part_size: int) -> tuple[list[str], list[str]]:
    """SHA-256 of every chunk and of every multipart part of ``path``, in one read.

    Parts are whole chunks (``part_size`` is a multiple of ``chunk_size``); an empty
    file is no chunks and one empty part, as the control plane lays it out.
    """
    if chunk_size <= 0 or part_size % chunk_size:
        raise ValueError(f"part size {part_size} is not a multiple of chunk size {chunk_size}")
    chunks: list[str] = []
    parts: list[str] = []
    part = hashlib.sha256()
    in_part = 0
    with path.open("rb") as handle:
        while block := handle.read(chunk_size):
            chunks.append(hashlib.sha256(block).hexdigest())
            part.update(block)
            in_part += len(block)
            if in_part == part_size:
                parts.append(part.hexdigest())
                part, in_part = hashlib.sha256(), 0
    if in_part or not parts:
        parts.append(part.hexdigest())
    return chunks, parts


def content_digest(path: Path, chunk_size: int) -> str:
    """``chunks_sha256`` of a local file: what a listing's record says of its content
    (SHA-256 over the raw chunk digests at ``chunk_size``)."""
    with path.open("rb") as handle:
        return chunks_digest(
            [
                hashlib.sha256(block).hexdigest()
                for block in iter(lambda: handle.read(chunk_size), b"")
            ]
        )
