"""Result rows, the table printed at the end of a run, and ``latest.json``.

Every row compares a subject (``value``) with a reference measured in the same run;
``ratio`` is value / reference, which is what survives noisy machines. A row that
could not be measured carries ``skipped`` with the reason instead of numbers.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LATEST = RESULTS_DIR / "latest.json"

_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True, slots=True)
class Goal:
    """A pass line on one field of a row, e.g. ``ratio >= 0.8``."""

    field: Literal["ratio", "value"]
    op: Literal[">=", "<="]
    threshold: float

    def __str__(self) -> str:
        return f"{self.field} {self.op} {self.threshold:g}"

    def met(self, row: Row) -> bool | None:
        subject = row.ratio if self.field == "ratio" else row.value
        if subject is None or math.isnan(subject):
            return None
        return _OPS[self.op](subject, self.threshold)


@dataclass(slots=True)
class Row:
    """One benchmark figure against its reference."""

    name: str
    value: float | None
    reference: float | None
    goal: Goal | None
    unit: str = ""
    note: str = ""
    skipped: str | None = None
    ratio: float | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.reference:
            self.ratio = self.value / self.reference

    @classmethod
    def skip(cls, name: str, reason: str, goal: Goal | None = None) -> Row:
        return cls(name=name, value=None, reference=None, goal=goal, skipped=reason)

    @property
    def met(self) -> bool | None:
        return None if self.goal is None or self.skipped else self.goal.met(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _clean(self.value),
            "reference": _clean(self.reference),
            "ratio": _clean(self.ratio),
            "goal": str(self.goal) if self.goal else None,
            "met": self.met,
            "unit": self.unit,
            "note": self.note,
            "skipped": self.skipped,
        }


def _clean(number: float | None) -> float | None:
    # JSON has no NaN; round so the file diffs stay readable.
    if number is None or math.isnan(number) or math.isinf(number):
        return None
    return round(float(number), 6)


def _fmt(number: float | None) -> str:
    if number is None:
        return "-"
    magnitude = abs(number)
    if magnitude >= 1000:
        return f"{number:,.0f}"
    if magnitude >= 10:
        return f"{number:.1f}"
    return f"{number:.3f}"


def format_table(rows: Sequence[Row]) -> str:
    """A fixed-width table: name, value, reference, ratio, goal, verdict, note."""
    header = ("name", "value", "reference", "ratio", "goal", "ok", "unit / note")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        verdict = {True: "yes", False: "MISS", None: "-"}[row.met]
        if row.skipped:
            lines.append((row.name, "-", "-", "-", str(row.goal or "-"), "SKIP", row.skipped))
            continue
        detail = " ".join(part for part in (row.unit, row.note) if part)
        lines.append(
            (
                row.name,
                _fmt(row.value),
                _fmt(row.reference),
                _fmt(row.ratio),
                str(row.goal or "-"),
                verdict,
                detail,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for index, line in enumerate(lines):
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        out.append("  ".join([*cells, line[-1]]).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths) + "  " + "-" * 11)
    return "\n".join(out)


def write_json(rows: Iterable[Row], path: Path = LATEST) -> Path:
    """Write the rows as a JSON list (atomically: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([row.to_json() for row in rows], indent=2) + "\n")
    tmp.replace(path)
    return path
