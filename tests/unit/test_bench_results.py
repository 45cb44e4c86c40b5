"""The benchmark rows: ratios, goals, skips, the table and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import percentile
from bench.results import Goal, Row, format_table, write_json


def test_ratio_and_goal() -> None:
    row = Row("hit_1mib_https", value=80.0, reference=100.0, goal=Goal("ratio", ">=", 0.8))
    assert row.ratio == 0.8
    assert row.met is True
    assert Row("x", 70.0, 100.0, Goal("ratio", ">=", 0.8)).met is False
    assert Row("y", 1.3, 5.0, Goal("value", "<=", 1.25)).met is False


def test_skip_has_no_numbers_and_no_verdict() -> None:
    row = Row.skip("plan_10gib_ddb_requests", "not available: no route")
    assert row.value is None and row.ratio is None and row.met is None
    assert row.to_json()["skipped"] == "not available: no route"


def test_no_reference_no_ratio() -> None:
    assert Row("z", 5.0, None, None).ratio is None
    assert Row("z", 5.0, 0.0, None).ratio is None


def test_json_rows(tmp_path: Path) -> None:
    rows = [Row("a", 1.0, 2.0, Goal("ratio", "<=", 1.5), unit="s"), Row.skip("b", "why")]
    path = write_json(rows, tmp_path / "out" / "latest.json")
    data = json.loads(path.read_text())
    assert data[0] == {
        "name": "a",
        "value": 1.0,
        "reference": 2.0,
        "ratio": 0.5,
        "goal": "ratio <= 1.5",
        "met": True,
        "unit": "s",
        "note": "",
        "skipped": None,
    }
    assert data[1]["value"] is None and data[1]["skipped"] == "why"


def test_table_lists_every_row() -> None:
    table = format_table([Row("a", 1.0, 2.0, None), Row.skip("b", "not available: x")])
    lines = table.splitlines()
    assert lines[0].startswith("name")
    assert any(line.startswith("a ") for line in lines)
    assert any("SKIP" in line and "not available: x" in line for line in lines)


def test_percentile_is_a_sample() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 0.5) == 50.0
    assert percentile(samples, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
