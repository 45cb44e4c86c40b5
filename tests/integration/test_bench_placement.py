"""A tiny run of ``python -m bench.placement_sim`` produces its rows.

Benchmarks run as their own process (``cwd`` = the repository), as ``make bench``
runs them; the figures are never judged here.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.bench_harness import bench_rows


def test_placement_rows(tmp_path: Path) -> None:
    rows = bench_rows("bench.placement_sim", tmp_path, 240)
    assert set(rows) == {"placement_max_mean", "placement_hit_vs_ch"}
    for row in rows.values():
        assert row["skipped"] is None, row["skipped"]
        assert row["value"] is not None and row["reference"] is not None
        assert row["ratio"] is not None and row["goal"]
    assert "sampled decisions equal to placement.choose" in rows["placement_max_mean"]["note"]
