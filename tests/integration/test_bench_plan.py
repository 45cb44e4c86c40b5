"""A tiny run of ``python -m bench.plan``: its row exists, measured, or skipped with the
reason that the control plane has no plan route yet (never a made-up number)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_plan_rows(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.plan", "--tiny", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    row = rows["plan_10gib_ddb_requests"]
    if row["skipped"]:
        assert row["skipped"].startswith("not available: "), row["skipped"]
        assert row["value"] is None
    else:
        assert row["value"] >= 1 and row["reference"] >= 1
        assert {"plan_10gib_p50_ms", "plan_10gib_p99_ms"} <= set(rows)
