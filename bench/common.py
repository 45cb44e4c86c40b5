"""What every benchmark family shares: its settings, CPU pinning, and the way a
family reports that its subject does not exist yet (``Unavailable``)."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.results import Goal, Row, format_table, write_json

REPO_ROOT = Path(__file__).resolve().parents[1]


class Unavailable(Exception):
    """The subject of a benchmark cannot run here (yet): the rows become skips."""


@dataclass(slots=True)
class BenchConfig:
    """One run's settings. ``quick`` shrinks sizes and durations (``make bench QUICK=1``);
    ``tiny`` shrinks them further, for the tests that only check the harness."""

    quick: bool = False
    tiny: bool = False
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fsnode-bench-")))

    def pick(self, full: float, quick: float, tiny: float) -> float:
        return tiny if self.tiny else quick if self.quick else full

    def pick_int(self, full: int, quick: int, tiny: int) -> int:
        return int(self.pick(full, quick, tiny))


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def server_cpu() -> int:
    """The core servers are pinned to (the first one this process may use)."""
    return cpus()[0]


def client_cpus() -> list[int]:
    """Cores for load generators: every core but the server's (or the same one on 1 CPU)."""
    rest = [cpu for cpu in cpus() if cpu != server_cpu()]
    return rest or [server_cpu()]


def pin_process(pid: int, cpu_set: Sequence[int]) -> None:
    """Pin every thread of ``pid`` (threads started later inherit the mask)."""
    mask = ",".join(str(cpu) for cpu in cpu_set)
    if shutil.which("taskset"):
        subprocess.run(
            ["taskset", "-a", "-p", "-c", mask, str(pid)],
            check=True,
            capture_output=True,
            timeout=10,
        )
        return
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), set(cpu_set))


def thread_affinities(pid: int) -> set[frozenset[int]]:
    """The distinct CPU masks of ``pid``'s threads (one mask when all are pinned alike)."""
    masks: set[frozenset[int]] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            masks.add(frozenset(os.sched_getaffinity(int(task))))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    return masks


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from /proc (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ProcessLookupError(pid)


def pss_bytes(pid: int) -> int:
    """Proportional set size of ``pid`` (/proc smaps_rollup): shared pages split
    between the processes that map them, so a sum over processes counts each once."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise ProcessLookupError(pid)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: a p99 is a sample that happened)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


@contextmanager
def deadline(seconds: float) -> Iterator[Callable[[], bool]]:
    """A ``expired()`` callable for bounding loops in time as well as count."""
    end = time.monotonic() + seconds
    yield lambda: time.monotonic() >= end


Family = Callable[[BenchConfig, set[str]], list[Row]]

# Things to stop when a run ends (a shared local stack, proxies): registered by
# whoever starts them, run once by ``run_cleanups``.
_CLEANUPS: list[Callable[[], None]] = []


def at_end(action: Callable[[], None]) -> None:
    _CLEANUPS.append(action)


def run_cleanups() -> None:
    while _CLEANUPS:
        action = _CLEANUPS.pop()
        try:
            action()
        except Exception as exc:  # keep stopping the rest
            print(f"bench: cleanup failed: {exc}", file=sys.stderr)


def run_family(
    names: Sequence[str],
    goals: dict[str, Goal | None],
    family: Family,
    config: BenchConfig,
    only: set[str] | None = None,
) -> list[Row]:
    """Run one family for the wanted names; any failure becomes skip rows that say why."""
    wanted = [name for name in names if only is None or name in only]
    if not wanted:
        return []
    try:
        rows = family(config, set(wanted))
    except Unavailable as exc:
        return [Row.skip(name, f"not available: {exc}", goals.get(name)) for name in wanted]
    except Exception as exc:  # a broken subject must not hide the other families
        reason = f"failed: {type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        return [Row.skip(name, reason, goals.get(name)) for name in wanted]
    produced = {row.name for row in rows}
    missing = [Row.skip(n, "not produced", goals.get(n)) for n in wanted if n not in produced]
    return [row for row in rows if row.name in wanted or row.name not in names] + missing


def standalone(
    names: Sequence[str], goals: dict[str, Goal | None], family: Family, description: str
) -> int:
    """``python -m bench.FAMILY [--quick]``: run one family, print its table."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs")
    parser.add_argument("--tiny", action="store_true", help="smallest sizes (harness check)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    config = BenchConfig(quick=args.quick or args.tiny, tiny=args.tiny)
    try:
        rows = run_family(names, goals, family, config)
    finally:
        run_cleanups()
        shutil.rmtree(config.workdir, ignore_errors=True)
    print(format_table(rows))
    if args.json:
        write_json(rows, args.json)
    sys.stdout.flush()
    return 0
