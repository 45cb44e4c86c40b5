"""HTTP Range parsing (RFC 9110 section 14), as a pure function over a header value.

Only the ``bytes`` unit is understood. The result is a list of inclusive
``(first, last)`` offsets, already clamped to the representation's size.
"""

from __future__ import annotations

import itertools
import re

from fsnode_core.errors import RangeNotSatisfiable

# More parts than this is not a real player's request; a server "MAY ignore or
# reject" such a range-set (RFC 9110 section 14.2), and we ignore it (200).
MAX_PARTS = 16
# Longest header considered at all: keeps parsing cost bounded for junk input.
MAX_HEADER_LENGTH = 2048

# range-spec = int-range / suffix-range / other-range (section 14.1.1); digits only.
_SPEC = re.compile(r"(\d{0,19})-(\d{0,19})")


class MalformedRange(ValueError):
    """The Range header is not a byte range-set we honour; serve the whole file (200).

    RFC 9110 section 14.2: a server MAY ignore Range, and MUST for unknown units.
    """


def parse_range(header: str, size: int, max_parts: int = MAX_PARTS) -> list[tuple[int, int]]:
    """Satisfiable byte ranges of ``header`` for a representation of ``size`` bytes.

    Raises MalformedRange when the header must be ignored, and RangeNotSatisfiable
    (416, ``Content-Range: bytes */SIZE``) when it is valid but selects nothing.
    Overlapping ranges are coalesced (section 14.3 allows it) so a multi-range
    request can never ask for more bytes than the file holds.
    """
    if size < 0:
        raise ValueError("size must not be negative")
    if len(header) > MAX_HEADER_LENGTH:
        raise MalformedRange("Range header is too long")
    unit, sep, range_set = header.partition("=")
    # range-unit is case-insensitive (section 14.1); other units are ignored.
    if not sep or unit.strip().lower() != "bytes":
        raise MalformedRange("only the bytes range unit is supported")
    # range-set = 1#range-spec: a comma list; empty elements are allowed by the
    # list rule (section 5.6.1) and skipped.
    specs = [part.strip() for part in range_set.split(",")]
    specs = [spec for spec in specs if spec]
    if not specs:
        raise MalformedRange("Range header has no range-spec")
    if len(specs) > max_parts:
        raise MalformedRange(f"Range header has more than {max_parts} parts")

    ranges: list[tuple[int, int]] = []
    for spec in specs:
        match = _SPEC.fullmatch(spec)
        if match is None:
            raise MalformedRange(f"bad range-spec {spec[:40]!r}")
        first_raw, last_raw = match.groups()
        if first_raw:
            first = int(first_raw)
            last = int(last_raw) if last_raw else None
            # Section 14.1.1: an int-range whose last-pos is below its first-pos is
            # invalid, which makes the whole header invalid.
            if last is not None and last < first:
                raise MalformedRange(f"range-spec {spec!r} ends before it starts")
            # Section 14.1.1: satisfiable iff first-pos < length; a last-pos at or
            # past the end means "to the end".
            if first >= size:
                continue
            ranges.append((first, size - 1 if last is None or last >= size else last))
        else:
            if not last_raw:
                raise MalformedRange("range-spec '-' names no bytes")
            suffix = int(last_raw)
            # Section 14.1.1: a suffix-range is satisfiable iff its length is
            # non-zero; a suffix longer than the file selects the whole file.
            if suffix == 0 or size == 0:
                continue
            ranges.append((max(0, size - suffix), size - 1))

    if not ranges:
        # Section 15.5.17: none of the ranges overlap the representation.
        raise RangeNotSatisfiable("no requested range overlaps the file", size=size)
    return _coalesce(ranges)


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping ranges (keeping request order when none overlap)."""
    if len(ranges) == 1:
        return ranges
    ordered = sorted(ranges)
    overlapping = any(nxt[0] <= cur[1] for cur, nxt in itertools.pairwise(ordered))
    if not overlapping:
        return ranges
    merged: list[tuple[int, int]] = [ordered[0]]
    for first, last in ordered[1:]:
        prev_first, prev_last = merged[-1]
        if first <= prev_last:
            merged[-1] = (prev_first, max(prev_last, last))
        else:
            merged.append((first, last))
    return merged
