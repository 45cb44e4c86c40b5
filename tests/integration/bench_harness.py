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
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bench_rows(module: str, tmp_path: Path, timeout: float = 280) -> dict[str, dict[str, Any]]:
    """``python -m module --tiny --json``, from the repository as ``make bench`` runs it,
    exiting 0; its rows by name."""
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "-m", module, "--tiny", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {row["name"]: row for row in json.loads(out.read_text())}


def check_measured_rows(module: str, names: tuple[str, ...], tmp_path: Path) -> None:
    for tool in ("wrk", "nginx"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            # `make test` installs them (debs-test): missing means a broken setup, not a pass.
            pytest.fail(f"{tool} is not installed (Debian packages nginx-light, wrk)")
    rows = bench_rows(module, tmp_path)
    for name in names:
        row = rows[name]
        assert row["skipped"] is None, f"{name}: {row['skipped']}"
        assert row["value"] > 0 and row["reference"] > 0 and row["ratio"] is not None
