"""A tiny run of ``python -m bench.misses`` against a real local stack produces its rows.

It checks the harness (stack, load generator, reference, row shape) in its own
process, as ``make bench`` runs it; the figures are never judged here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.bench_harness import check_measured_rows

NAMES = (
    "miss_ttfb",
    "miss_ttfb_slow_control_plane",
    "miss_cold_seq",
)

pytestmark = pytest.mark.localstack


def test_misses_rows(tmp_path: Path) -> None:
    check_measured_rows("bench.misses", NAMES, tmp_path)
