"""The soak runs only when asked for (``make soak``, or ``pytest -m soak``): it takes minutes."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in str(config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a soak runs only with -m soak (make soak)")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)
