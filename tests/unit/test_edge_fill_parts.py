"""Fill layouts (edge_node.fill_parts) and what a FillBuffer says is in place
(``available``), for arbitrary part layouts and arrival orders, against a byte map."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_node.cache import FillBuffer
from edge_node.fill_parts import check_tiling, even_parts, fill_parts

KIB = 1024


@given(
    length=st.integers(0, 64 * KIB),
    part_bytes=st.integers(1, 32 * KIB),
    max_parts=st.integers(1, 8),
)
def test_the_even_layout_is_equal_parts_of_about_part_bytes_at_most_max_parts(
    length: int, part_bytes: int, max_parts: int
) -> None:
    parts = even_parts(length, part_bytes, max_parts)
    check_tiling(length, parts)
    assert parts == sorted(parts)
    assert len(parts) <= max_parts
    if length:
        assert len(parts) == max(1, min(max_parts, math.ceil(length / part_bytes)))
        # Equal parts but the last, which may be shorter.
        sizes = [stop - start for start, stop in parts]
        assert len(set(sizes[:-1])) <= 1 and sizes[-1] <= sizes[0]


@given(data=st.data())
def test_a_reader_started_fill_asks_first_for_a_small_part_at_its_offset(
    data: st.DataObject,
) -> None:
    length = data.draw(st.integers(1, 64 * KIB), "length")
    part_bytes = data.draw(st.integers(1, 32 * KIB), "part_bytes")
    max_parts = data.draw(st.integers(1, 8), "max_parts")
    first_bytes = data.draw(st.integers(1, 16 * KIB), "first_bytes")
    start = data.draw(st.integers(0, length - 1), "start")
    parts = fill_parts(length, part_bytes, max_parts, start=start, first_bytes=first_bytes)
    check_tiling(length, parts)
    even = even_parts(length, part_bytes, max_parts)
    if length <= first_bytes:
        assert parts == even  # the whole chunk is one short GET already
        return
    assert parts[0] == (start, min(length, start + first_bytes))
    assert len(parts) <= max_parts + 2
    rest = parts[1:]
    # The bytes after the first part come before the prefix, each group in order.
    after = [p for p in rest if p[0] >= parts[0][1]]
    before = [p for p in rest if p[1] <= start]
    assert rest == after + before and after == sorted(after) and before == sorted(before)
    # The rest keeps the even layout's boundaries: every even boundary is still one.
    bounds = {b for p in parts for b in p}
    assert {b for p in even for b in p} <= bounds | set(range(start, parts[0][1] + 1))


@given(
    length=st.integers(0, 64 * KIB),
    part_bytes=st.integers(1, 32 * KIB),
    max_parts=st.integers(1, 8),
    first_bytes=st.integers(0, 16 * KIB),
)
def test_fills_without_a_reader_offset_keep_the_even_layout(
    length: int, part_bytes: int, max_parts: int, first_bytes: int
) -> None:
    assert fill_parts(length, part_bytes, max_parts, first_bytes=first_bytes) == even_parts(
        length, part_bytes, max_parts
    )


def test_an_offset_outside_the_chunk_is_refused() -> None:
    with pytest.raises(ValueError):
        fill_parts(100, 10, 4, start=100, first_bytes=5)


@pytest.mark.parametrize(
    "parts",
    [[(0, 5), (6, 10)], [(0, 5), (4, 10)], [(0, 5)], [(1, 10)], [(0, 5), (5, 5), (5, 10)]],
)
def test_layouts_with_gaps_or_overlaps_are_refused(parts: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError):
        check_tiling(10, parts)


@st.composite
def layouts_and_arrivals(
    draw: st.DrawFn,
) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
    """A chunk length, parts tiling it in a random order, and a random arrival sequence
    of (part, byte count) steps that fills every part completely."""
    length = draw(st.integers(1, 200))
    cuts = draw(st.sets(st.integers(1, length - 1), max_size=8)) if length > 1 else set()
    bounds = [0, *sorted(cuts), length]
    parts = list(itertools.pairwise(bounds))
    parts = draw(st.permutations(parts))
    steps: list[tuple[int, int]] = []
    remaining = [stop - start for start, stop in parts]
    while any(remaining):
        part = draw(st.sampled_from([i for i, left in enumerate(remaining) if left]))
        count = draw(st.integers(1, remaining[part]))
        remaining[part] -= count
        steps.append((part, count))
    return length, parts, steps


def _reference_available(present: bytearray, pos: int) -> int:
    end = pos
    while end < len(present) and present[end]:
        end += 1
    return end


@settings(max_examples=150, deadline=None)
@given(case=layouts_and_arrivals())
def test_available_matches_a_byte_map_for_any_layout_and_arrival_order(
    case: tuple[int, list[tuple[int, int]], list[tuple[int, int]]],
) -> None:
    length, parts, steps = case

    async def run() -> None:
        buffer = FillBuffer(length, parts)
        present = bytearray(length)

        def check() -> None:
            for pos in range(length + 1):
                assert buffer.available(pos) == _reference_available(present, pos), pos
            assert buffer.prefix() == _reference_available(present, 0)

        check()
        for part, count in steps:
            start, _stop = parts[part]
            got = buffer.done[part]
            present[start + got : start + got + count] = b"\x01" * count
            buffer.progress(part, count)
            check()
        assert buffer.prefix() == length

    asyncio.run(run())


def test_an_empty_chunk_has_one_empty_part() -> None:
    async def run() -> None:
        buffer = FillBuffer(0, fill_parts(0, 10, 4, first_bytes=5))
        assert buffer.parts == [(0, 0)]
        assert buffer.prefix() == 0

    asyncio.run(run())
