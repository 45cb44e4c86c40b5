"""The soak runs only when asked for (``make soak``, or ``pytest -m soak``): it takes minutes.

Otherwise its tests are deselected, not skipped: the suite reports no skips, so a skip
always means something is wrong.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in str(config.getoption("markexpr") or ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak") is not None]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if item.get_closest_marker("soak") is None]
