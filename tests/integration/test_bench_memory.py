"""A tiny run of ``python -m bench.memory`` against a real local stack produces its rows.

It checks the harness (stack, load generator, reference, row shape) in its own
process, as ``make bench`` runs it; the figures are never judged here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.bench_harness import check_measured_rows

NAMES = ("edge_rss_64_streams_mib", "edge2_rss_64_streams_mib")

pytestmark = pytest.mark.localstack


def test_memory_rows(tmp_path: Path) -> None:
    check_measured_rows("bench.memory", NAMES, tmp_path)
