"""How a chunk fill splits into ranged GETs: the parts, as ``(start, stop)`` offsets
within the chunk, in the order they are requested.

A fill with no reader waiting at a known offset (read-ahead, warm work, a reader
at the chunk's start when no first part is configured) takes the even layout: up
to ``max_parts`` parts of at least ``part_bytes``. A fill that a reader started at
offset ``start`` first asks for a small part beginning there, so the reader's
first byte waits for one short GET, not for a whole part that begins at a part
boundary before it (S3 and most origins send nothing of a response before they
have begun it, and some, like the local stack's moto, build the whole body
first). The rest of the chunk, the prefix before ``start`` included, follows in
the even layout's parts with the first part cut out of them, the bytes after it
first: those are what a reader streaming on from ``start`` needs next.

Every layout tiles ``[0, length)`` exactly (no gap, no overlap), which is what
``FillBuffer`` relies on; there are at most ``max_parts + 2`` parts.
"""

from __future__ import annotations

import math

Part = tuple[int, int]


def even_parts(length: int, part_bytes: int, max_parts: int) -> list[Part]:
    """Up to ``max_parts`` equal parts of at least ``part_bytes`` (the last one shorter)."""
    count = max(1, min(max_parts, math.ceil(length / part_bytes)))
    size = max(1, math.ceil(length / count))
    return [(start, min(length, start + size)) for start in range(0, length, size)] or [(0, 0)]


def fill_parts(
    length: int, part_bytes: int, max_parts: int, *, start: int | None = None, first_bytes: int = 0
) -> list[Part]:
    """The parts of a fill; with ``start`` (a reader's offset) and ``first_bytes`` > 0,
    a first part of ``first_bytes`` at ``start``, then the rest (see the module doc)."""
    even = even_parts(length, part_bytes, max_parts)
    if not first_part_leads(length, start, first_bytes):
        # No reader, or a chunk no longer than the first part (one short GET already).
        return even
    assert start is not None
    if not 0 <= start < length:
        raise ValueError(f"offset {start} is outside a chunk of {length} bytes")
    head = (start, min(length, start + first_bytes))
    after: list[Part] = []
    before: list[Part] = []
    for low, high in even:
        if low < head[0]:
            before.append((low, min(high, head[0])))
        if high > head[1]:
            after.append((max(low, head[1]), high))
    return [head, *after, *before]


def first_part_leads(length: int, start: int | None, first_bytes: int) -> bool:
    """Whether ``fill_parts`` puts a reader's first part ahead of the even layout."""
    return start is not None and first_bytes > 0 and length > first_bytes


def check_tiling(length: int, parts: list[Part]) -> None:
    """Raise ValueError unless ``parts`` cover ``[0, length)`` once, in any order."""
    ordered = sorted(parts)
    if length == 0:
        if ordered != [(0, 0)]:
            raise ValueError("an empty chunk has the one part (0, 0)")
        return
    end = 0
    for low, high in ordered:
        if low != end or high <= low:
            raise ValueError(f"parts do not tile the chunk: {ordered}")
        end = high
    if end != length:
        raise ValueError(f"parts end at {end}, not at the chunk's {length} bytes")
