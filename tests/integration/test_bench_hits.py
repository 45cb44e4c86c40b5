"""A tiny run of ``python -m bench.hits`` against a real local stack produces its rows.

It checks the harness (stack, load generator, reference, row shape) in its own
process, as ``make bench`` runs it; the figures are never judged here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("hit_1mib_http", "hit_1mib_https", "hit_64kib_https", "hit_full_https",)

pytestmark = pytest.mark.localstack


def test_hits_rows(tmp_path: Path) -> None:
    for tool in ("wrk", "nginx"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            pytest.skip(f"{tool} is not installed (Debian packages nginx-light, wrk)")
    out = tmp_path / "rows.json"
    done = subprocess.run([sys.executable, "-m", "bench.hits", "--tiny", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    for name in NAMES:
        row = rows[name]
        assert row["skipped"] is None, f"{name}: {row['skipped']}"
        assert row["value"] > 0 and row["reference"] > 0 and row["ratio"] is not None
