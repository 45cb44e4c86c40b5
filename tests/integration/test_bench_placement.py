"""A tiny run of ``python -m bench.placement_sim`` produces its rows.

Benchmarks run as their own process (``cwd`` = the repository), as ``make bench``
runs them; the figures are never judged here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_module(module: str, tmp_path: Path, timeout: float) -> list[dict[str, Any]]:
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "-m", module, "--tiny", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows: list[dict[str, Any]] = json.loads(out.read_text())
    return rows


def test_placement_rows(tmp_path: Path) -> None:
    rows = {row["name"]: row for row in run_module("bench.placement_sim", tmp_path, 240)}
    assert set(rows) == {"placement_max_mean", "placement_hit_vs_ch"}
    for row in rows.values():
        assert row["skipped"] is None, row["skipped"]
        assert row["value"] is not None and row["reference"] is not None
        assert row["ratio"] is not None and row["goal"]
    assert "sampled decisions equal to placement.choose" in rows["placement_max_mean"]["note"]
