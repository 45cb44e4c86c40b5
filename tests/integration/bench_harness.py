"""Run one benchmark family tiny, in its own process as ``make bench`` does, and check its rows.

The figures are never judged here: only that the harness (stack, load generator,
reference, row shape) produced a measured row for every name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def check_measured_rows(module: str, names: tuple[str, ...], tmp_path: Path) -> None:
    for tool in ("wrk", "nginx"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            # `make test` installs them (debs-test): missing means a broken setup, not a pass.
            pytest.fail(f"{tool} is not installed (Debian packages nginx-light, wrk)")
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "-m", module, "--tiny", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    for name in names:
        row = rows[name]
        assert row["skipped"] is None, f"{name}: {row['skipped']}"
        assert row["value"] > 0 and row["reference"] > 0 and row["ratio"] is not None
