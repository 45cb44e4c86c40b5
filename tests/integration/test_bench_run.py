"""``python -m bench`` end to end on the cheapest family: table printed, JSON written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cli_writes_rows(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--tiny",
            "--only",
            "placement_max_mean",
            "placement_hit_vs_ch",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "placement_max_mean" in done.stdout
    rows = json.loads(output.read_text())
    assert [row["name"] for row in rows] == ["placement_max_mean", "placement_hit_vs_ch"]
    for row in rows:
        assert {"name", "value", "reference", "ratio", "goal"} <= set(row)
