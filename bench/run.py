"""``python -m bench [--quick] [--only NAME...]``: every benchmark family, one table,
``bench/results/latest.json``.

Families run one after another (never two loads at once); those that need the
local stack share one, started on first use and stopped at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType

from bench import hits, hls, memory, misses, placement_sim, plan
from bench.common import BenchConfig, run_cleanups, run_family
from bench.results import LATEST, Row, format_table, write_json

# Order: what needs no stack first, then the stack's families (the hit benchmarks
# before memory, which reuses their warmed file).
FAMILIES: tuple[ModuleType, ...] = (placement_sim, plan, hits, misses, hls, memory)
ALL_NAMES: tuple[str, ...] = tuple(name for family in FAMILIES for name in family.NAMES)


def run(config: BenchConfig, only: set[str] | None = None) -> list[Row]:
    rows: list[Row] = []
    try:
        for family in FAMILIES:
            if only is not None and not only & set(family.NAMES):
                continue
            started = time.monotonic()
            print(f"bench: {family.__name__.removeprefix('bench.')} ...", flush=True)
            rows += run_family(family.NAMES, family.GOALS, family.run, config, only)
            print(
                f"bench: {family.__name__.removeprefix('bench.')} done in "
                f"{time.monotonic() - started:.1f} s",
                flush=True,
            )
    finally:
        run_cleanups()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and short loads (under two minutes)"
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="smallest sizes: checks the harness, the figures mean little",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=ALL_NAMES,
        help="run only these rows (their families)",
    )
    parser.add_argument(
        "--output", type=Path, default=LATEST, help=f"where the JSON rows go (default {LATEST})"
    )
    args = parser.parse_args(argv)
    config = BenchConfig(quick=args.quick or args.tiny, tiny=args.tiny)
    started = time.monotonic()
    try:
        rows = run(config, set(args.only) if args.only else None)
    finally:
        shutil.rmtree(config.workdir, ignore_errors=True)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    print()
    print(format_table(rows))
    path = write_json(rows, args.output)
    missed = [row.name for row in rows if row.met is False]
    skipped = [row.name for row in rows if row.skipped]
    print(f"\n{mode} run in {time.monotonic() - started:.0f} s; wrote {path}")
    if missed:
        print(f"goals missed: {', '.join(missed)}")
    if skipped:
        print(f"skipped: {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
