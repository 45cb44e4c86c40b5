"""Range parsing (edge_node.ranges) against Python slicing of a bytes object."""

from __future__ import annotations

import pytest
from fsnode_core.errors import RangeNotSatisfiable
from hypothesis import given
from hypothesis import strategies as st

from edge_node.ranges import MAX_PARTS, MalformedRange, parse_range

DATA = bytes(range(256)) * 4  # 1024 distinct-ish bytes


def served(header: str, data: bytes) -> list[bytes]:
    return [data[first : last + 1] for first, last in parse_range(header, len(data))]


sizes = st.integers(min_value=1, max_value=len(DATA))
positions = st.integers(min_value=0, max_value=2 * len(DATA))


@given(size=sizes, first=positions, length=st.integers(min_value=0, max_value=2 * len(DATA)))
def test_int_range_matches_slicing(size: int, first: int, length: int) -> None:
    data = DATA[:size]
    last = first + length
    header = f"bytes={first}-{last}"
    if first >= size:
        with pytest.raises(RangeNotSatisfiable) as info:
            parse_range(header, size)
        assert info.value.size == size
    else:
        assert served(header, data) == [data[first : last + 1]]


@given(size=sizes, first=positions)
def test_open_range_matches_slicing(size: int, first: int) -> None:
    data = DATA[:size]
    if first >= size:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(f"bytes={first}-", size)
    else:
        assert served(f"bytes={first}-", data) == [data[first:]]


@given(size=sizes, suffix=positions)
def test_suffix_range_matches_slicing(size: int, suffix: int) -> None:
    data = DATA[:size]
    if suffix == 0:
        with pytest.raises(RangeNotSatisfiable):
            parse_range("bytes=-0", size)
    else:
        assert served(f"bytes=-{suffix}", data) == [data[-suffix:]]


@given(
    size=sizes,
    specs=st.lists(
        st.tuples(st.integers(0, len(DATA)), st.integers(0, 64)), min_size=2, max_size=MAX_PARTS
    ),
)
def test_multi_range_covers_requested_bytes_without_amplification(
    size: int, specs: list[tuple[int, int]]
) -> None:
    data = DATA[:size]
    header = "bytes=" + ", ".join(f"{a}-{a + n}" for a, n in specs)
    wanted = {i for a, n in specs for i in range(a, min(a + n, size - 1) + 1) if a < size}
    if not wanted:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, size)
        return
    ranges = parse_range(header, size)
    covered = [i for first, last in ranges for i in range(first, last + 1)]
    # Every requested byte is sent, none twice, and never more than the file.
    assert set(covered) == wanted
    assert len(covered) == len(set(covered)) <= size
    for (first, last), chunk in zip(ranges, served(header, data), strict=True):
        assert chunk == data[first : last + 1]


def test_multi_range_keeps_request_order_when_disjoint() -> None:
    assert parse_range("bytes=500-599, 0-99", 1000) == [(500, 599), (0, 99)]


def test_overlapping_ranges_are_coalesced() -> None:
    assert parse_range("bytes=0-99, 50-149, 300-", 400) == [(0, 149), (300, 399)]
    assert parse_range("bytes=0-,0-,0-", 10) == [(0, 9)]


@pytest.mark.parametrize(
    "header",
    [
        "bytes=5-2",  # last-pos below first-pos (RFC 9110 14.1.1)
        "bytes=-",
        "bytes=",
        "bytes=,",
        "bytes=abc",
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes= -1-",
        "items=0-1",
        "0-1",
        "bytes=0-1;x",
        "bytes=0x10-20",
        "bytes=" + ",".join(["0-1"] * (MAX_PARTS + 1)),
        "bytes=0-" + "9" * 30,
        "bytes=" + "1" * 5000,
    ],
)
def test_malformed_ranges_are_ignored(header: str) -> None:
    with pytest.raises(MalformedRange):
        parse_range(header, 100)


def test_unit_is_case_insensitive_and_whitespace_is_allowed() -> None:
    assert parse_range("Bytes= 0-1 ,  5-6", 10) == [(0, 1), (5, 6)]


def test_unsatisfiable_parts_are_dropped_when_others_remain() -> None:
    assert parse_range("bytes=200-300, 0-9", 100) == [(0, 9)]


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=100-,-0"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, 100)
    assert info.value.size == 100
    assert info.value.code == "range_not_satisfiable"


def test_empty_representation_has_no_satisfiable_range() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-5", 0)
