"""A tiny run of ``python -m bench.hits`` against a real local stack produces its rows.

It checks the harness (stack, load generator, reference, row shape) in its own
process, as ``make bench`` runs it; the figures are never judged here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.bench_harness import check_measured_rows

NAMES = (
    "hit_1mib_http",
    "hit_1mib_https",
    "hit_64kib_https",
    "hit_full_https",
    "hit2_1mib_https",
    "hit2_64kib_https",
    "hit2_full_https",
)

pytestmark = pytest.mark.localstack


def test_hits_rows(tmp_path: Path) -> None:
    check_measured_rows("bench.hits", NAMES, tmp_path)
