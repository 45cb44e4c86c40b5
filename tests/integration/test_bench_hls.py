"""A tiny run of ``python -m bench.hls`` against a real local stack produces its row.

It checks the harness (HLS folders, the folder share's redirect, the edge's ``/t/``
route, the presigned reference) in its own process, as ``make bench`` runs it; the
figure is never judged here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.bench_harness import check_measured_rows

pytestmark = pytest.mark.localstack


def test_hls_cold_start_row(tmp_path: Path) -> None:
    check_measured_rows("bench.hls", ("hls_cold_start",), tmp_path)
