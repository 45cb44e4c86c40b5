"""The plan's byte-range rules agree with the shared chunk arithmetic (property tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fsnode_core.chunks import slices_for_range
from fsnode_core.errors import InvalidInput, RangeNotSatisfiable
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))
from chalicelib.plans import byte_range, chunk_span


@given(st.integers(1, 10**7), st.data())
def test_planned_chunks_are_exactly_the_range_chunks(size: int, data: st.DataObject) -> None:
    # At most about a thousand chunks per example keeps each case fast.
    chunk_size = data.draw(st.integers(size // 1000 + 1, max(size // 1000 + 1, 2**20)))
    offset = data.draw(st.integers(0, size - 1))
    length = data.draw(st.integers(1, 2 * size))
    first, last = byte_range({"offset": str(offset), "length": str(length)}, size)
    assert first == offset and last == min(offset + length, size) - 1
    planned = list(chunk_span(first, last, chunk_size))
    assert planned == [s.index for s in slices_for_range(first, last, size, chunk_size)]


def test_defaults_and_refusals() -> None:
    assert byte_range({}, 10) == (0, 9)
    assert byte_range({"offset": "4"}, 10) == (4, 9)
    assert byte_range({}, 0) == (0, -1)
    for query in ({"offset": "-1"}, {"length": "0"}, {"offset": "1.5"}):
        with pytest.raises(InvalidInput):
            byte_range(query, 10)
    with pytest.raises(RangeNotSatisfiable):
        byte_range({"offset": "10"}, 10)
