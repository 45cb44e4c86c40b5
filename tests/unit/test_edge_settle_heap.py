"""A started edge process moves what it holds for good out of the collector's reach."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from edge_node.workers import settle_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_startup_objects_are_frozen_and_new_ones_are_collected(unfrozen: None) -> None:
    held = [[index] for index in range(10_000)]  # what startup builds and keeps
    settle_heap()
    assert gc.get_freeze_count() >= len(held)
    # A cycle made after start is still found and freed by a full collection.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
