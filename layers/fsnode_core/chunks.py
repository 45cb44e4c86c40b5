"""Chunk arithmetic: how a file of ``size`` bytes splits into fixed-size chunks.

Chunks are the unit of caching, hashing and replication. Uploads use S3 multipart
parts that are whole multiples of the chunk size, because S3 refuses parts under
5 MiB (except the last) while the default chunk is 4 MiB, and a multipart upload has
at most 10,000 parts: past 10,000 minimum parts (78 GiB at 4 MiB chunks) parts grow.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
S3_MIN_PART_SIZE = 5 * 1024 * 1024
S3_MAX_PARTS = 10_000


@dataclass(frozen=True, slots=True)
class ChunkSlice:
    """The part of chunk ``index`` that a byte range covers."""

    index: int
    offset_in_chunk: int
    length: int


@dataclass(frozen=True, slots=True)
class PartSpan:
    """One multipart-upload part: its 1-based number, offset and length in the file."""

    part_number: int
    offset: int
    length: int
    first_chunk: int
    chunk_count: int


def chunk_count(size: int, chunk_size: int) -> int:
    """Number of chunks in a file of ``size`` bytes (an empty file has none)."""
    _check(size, chunk_size)
    return -(-size // chunk_size)


def chunk_bounds(index: int, size: int, chunk_size: int) -> tuple[int, int]:
    """``(offset, length)`` of chunk ``index``; the last chunk may be short."""
    count = chunk_count(size, chunk_size)
    if not 0 <= index < count:
        raise ValueError(f"chunk {index} is outside 0..{count - 1}")
    offset = index * chunk_size
    return offset, min(chunk_size, size - offset)


def slices_for_range(start: int, end: int, size: int, chunk_size: int) -> list[ChunkSlice]:
    """The chunk slices that cover bytes ``start..end`` inclusive, in order."""
    _check(size, chunk_size)
    if not 0 <= start <= end < size:
        raise ValueError(f"range {start}-{end} is outside a file of {size} bytes")
    out: list[ChunkSlice] = []
    pos = start
    while pos <= end:
        index = pos // chunk_size
        within = pos - index * chunk_size
        length = min(chunk_size - within, end - pos + 1)
        out.append(ChunkSlice(index, within, length))
        pos += length
    return out


def part_size_for(chunk_size: int, size: int = 0) -> int:
    """The smallest whole multiple of ``chunk_size`` that S3 accepts as a part of a file
    of ``size`` bytes: at least 5 MiB, and large enough for at most 10,000 parts.

    Without ``size`` (or for files up to 10,000 minimum parts) it depends on the chunk
    size alone: what ``/web/config.json`` publishes as ``part_size``.
    """
    if chunk_size <= 0:
        raise ValueError("chunk size must be positive")
    least = max(S3_MIN_PART_SIZE, -(-size // S3_MAX_PARTS))
    return -(-least // chunk_size) * chunk_size


def part_layout(size: int, chunk_size: int) -> list[PartSpan]:
    """Multipart parts for a file: each a whole number of chunks (an empty file: one part)."""
    _check(size, chunk_size)
    part_size = part_size_for(chunk_size, size)
    per_part = part_size // chunk_size
    if size == 0:
        return [PartSpan(1, 0, 0, 0, 0)]
    parts: list[PartSpan] = []
    total_chunks = chunk_count(size, chunk_size)
    offset = 0
    number = 1
    while offset < size:
        length = min(part_size, size - offset)
        first = offset // chunk_size
        parts.append(PartSpan(number, offset, length, first, min(per_part, total_chunks - first)))
        offset += length
        number += 1
    return parts


def _check(size: int, chunk_size: int) -> None:
    if size < 0:
        raise ValueError("size must not be negative")
    if chunk_size <= 0:
        raise ValueError("chunk size must be positive")
