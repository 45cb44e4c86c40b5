"""Chunk arithmetic against plain slicing of a bytes object."""

from __future__ import annotations

import pytest
from fsnode_core.chunks import (
    S3_MIN_PART_SIZE,
    chunk_bounds,
    chunk_count,
    part_layout,
    part_size_for,
    slices_for_range,
)
from hypothesis import given
from hypothesis import strategies as st


@st.composite
def file_and_range(draw: st.DrawFn) -> tuple[int, int, int, int]:
    size = draw(st.integers(1, 5000))
    chunk = draw(st.integers(1, 700))
    start = draw(st.integers(0, size - 1))
    end = draw(st.integers(start, size - 1))
    return size, chunk, start, end


@given(file_and_range())
def test_slices_reassemble_the_range(case: tuple[int, int, int, int]) -> None:
    size, chunk_size, start, end = case
    data = bytes(i % 251 for i in range(size))
    chunks = [data[i : i + chunk_size] for i in range(0, size, chunk_size)]

    stitched = b"".join(
        chunks[s.index][s.offset_in_chunk : s.offset_in_chunk + s.length]
        for s in slices_for_range(start, end, size, chunk_size)
    )

    assert stitched == data[start : end + 1]


@given(st.integers(0, 10**12), st.integers(1, 10**9))
def test_chunks_tile_the_file(size: int, chunk_size: int) -> None:
    count = chunk_count(size, chunk_size)
    if count == 0:
        assert size == 0
        return
    last_offset, last_length = chunk_bounds(count - 1, size, chunk_size)
    assert last_offset + last_length == size
    assert 0 < last_length <= chunk_size


@given(st.integers(0, 200 * 2**20), st.sampled_from([2**20, 4 * 2**20, 8 * 2**20, 3 * 10**6]))
def test_parts_are_whole_chunks_and_big_enough(size: int, chunk_size: int) -> None:
    parts = part_layout(size, chunk_size)

    assert sum(p.length for p in parts) == size
    assert [p.part_number for p in parts] == list(range(1, len(parts) + 1))
    for part in parts[:-1]:
        assert part.length >= S3_MIN_PART_SIZE
        assert part.length % chunk_size == 0
        assert part.offset == part.first_chunk * chunk_size
    assert sum(p.chunk_count for p in parts) == chunk_count(size, chunk_size)


def test_default_chunk_makes_eight_mib_parts() -> None:
    assert part_size_for(4 * 2**20) == 8 * 2**20
    assert part_size_for(8 * 2**20) == 8 * 2**20


@given(st.integers(0, 5 * 2**40), st.sampled_from([2**20, 4 * 2**20, 8 * 2**20, 3 * 10**6]))
def test_parts_grow_so_no_file_needs_more_than_10000(size: int, chunk_size: int) -> None:
    part_size = part_size_for(chunk_size, size)
    assert part_size % chunk_size == 0 and part_size >= S3_MIN_PART_SIZE
    assert -(-size // part_size) <= 10_000
    # The smallest such size: one chunk less would need more parts (or break the minimum).
    smaller = part_size - chunk_size
    assert smaller < S3_MIN_PART_SIZE or -(-size // smaller) > 10_000
    if size <= 10_000 * part_size_for(chunk_size):
        assert part_size == part_size_for(chunk_size)  # files up to ~78 GiB: unchanged


def test_a_100_gib_file_takes_12_mib_parts_at_4_mib_chunks() -> None:
    size = 100 * 2**30
    assert part_size_for(4 * 2**20, size) == 12 * 2**20
    parts = part_layout(size, 4 * 2**20)
    assert len(parts) == 8534 and parts[0].chunk_count == 3


@pytest.mark.parametrize(
    ("start", "end", "size"), [(-1, 3, 10), (5, 4, 10), (0, 10, 10), (0, 0, 0)]
)
def test_out_of_file_ranges_are_refused(start: int, end: int, size: int) -> None:
    with pytest.raises(ValueError):
        slices_for_range(start, end, size, 4)


def test_chunk_index_out_of_file_is_refused() -> None:
    with pytest.raises(ValueError):
        chunk_bounds(3, 10, 4)
