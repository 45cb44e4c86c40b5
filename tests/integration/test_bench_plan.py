"""A tiny run of ``python -m bench.plan``: its row exists, measured, or skipped with the
reason that the control plane has no plan route yet (never a made-up number)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.bench_harness import bench_rows


def test_plan_rows(tmp_path: Path) -> None:
    rows = bench_rows("bench.plan", tmp_path)
    row = rows["plan_10gib_ddb_requests"]
    if row["skipped"]:
        assert row["skipped"].startswith("not available: "), row["skipped"]
        assert row["value"] is None
    else:
        assert row["value"] >= 1 and row["reference"] >= 1
        assert {"plan_10gib_p50_ms", "plan_10gib_p99_ms"} <= set(rows)
