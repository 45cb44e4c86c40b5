"""The soak: minutes of mixed range traffic over a three-edge stack while an edge is
killed (SIGKILL) and restarted every minute. Zero wrong bytes, zero lost files, the
edges' memory flat.

Run it with ``make soak`` (10 minutes) or ``make soak SOAK_SECONDS=60``. Settings
(environment): ``FSNODE_SOAK_SECONDS`` (600), ``FSNODE_SOAK_KILL_EVERY`` (60, seconds
between kills), ``FSNODE_SOAK_DOWN_SECONDS`` (8, how long a killed edge stays down),
``FSNODE_SOAK_READERS`` (4 threads). edge-1 is never killed: it is the memory witness,
running from start to end; edge-2 and edge-3 take turns dying.

The summary (traffic, kills, RSS per edge) is printed and written to ``soak.json`` in
the stack's folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fsnode.client import FsnodeClient
from fsnode.localstack import processes
from fsnode.localstack.stack import StackInfo
from fsnode.settings import ClientSettings
from tests.soak.traffic import SoakFile, Traffic

MIB = 1024 * 1024
SECONDS = float(os.environ.get("FSNODE_SOAK_SECONDS", "600"))
KILL_EVERY = float(os.environ.get("FSNODE_SOAK_KILL_EVERY", "60"))
DOWN_SECONDS = float(os.environ.get("FSNODE_SOAK_DOWN_SECONDS", "8"))
READERS = int(os.environ.get("FSNODE_SOAK_READERS", "4"))
# Small memory bounds, so the edges reach their plateau early and growth past it shows.
EDGE_SETTINGS = {
    "FSNODE_FILL_MEMORY_BYTES": str(64 * MIB),
}
# Memory flat: the witness may end at most this much above its size after warm-up.
RSS_GROWTH_FACTOR = 1.5
RSS_GROWTH_SLACK = 64 * MIB
SIZES = [1, 100_000, 4 * MIB, 9 * MIB + 12_345, 13 * MIB + 1]

pytestmark = [pytest.mark.soak, pytest.mark.timeout(SECONDS + 900)]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FSNODE_", "AWS_"))}
    env["FSNODE_HOME"] = os.environ["FSNODE_HOME"]
    return subprocess.run(
        [sys.executable, "-m", "fsnode.cli", *args],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def soak_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    home = tmp_path_factory.mktemp("soak-home")
    saved_home = os.environ.get("FSNODE_HOME")
    os.environ["FSNODE_HOME"] = str(home)
    state_dir = tmp_path_factory.mktemp("soak-stack")
    settings = [
        arg
        for edge in ("edge-1", "edge-2", "edge-3")
        for name, value in EDGE_SETTINGS.items()
        for arg in ("--edge-env-for", f"{edge}:{name}={value}")
    ]
    up = _cli(
        "local", "up", "--detach", "--nodes", "3", "--state-dir", str(state_dir),
        "--heartbeat-interval", "2", "--heartbeat-timeout", "15", *settings, "--json",
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    try:
        yield StackInfo.load(state_dir)
    finally:
        _cli("local", "down", "--state-dir", str(state_dir))
        if saved_home is None:
            os.environ.pop("FSNODE_HOME", None)
        else:
            os.environ["FSNODE_HOME"] = saved_home


def _rss(pid: int) -> int | None:
    """The edge's resident set: its node agent and worker processes, summed."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        total = 0
        for member in [pid, *map(int, children)]:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    except OSError:
        return None
    return total or None


class MemoryLog:
    """RSS samples per edge name, each with its pid (a restart starts a new process)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[float, int, int]]] = {}

    def sample(self, stack_dir: Path, started: float) -> None:
        info = StackInfo.load(stack_dir)
        for index, edge in enumerate(info.edges):
            rss = _rss(edge.pid)
            if rss is not None:
                name = f"edge-{index + 1}"
                self.samples.setdefault(name, []).append(
                    (time.monotonic() - started, edge.pid, rss)
                )

    def summary(self) -> dict[str, Any]:
        out = {}
        for name, rows in sorted(self.samples.items()):
            out[name] = {
                "first_mib": round(rows[0][2] / MIB, 1),
                "last_mib": round(rows[-1][2] / MIB, 1),
                "peak_mib": round(max(r[2] for r in rows) / MIB, 1),
                "processes": len({r[1] for r in rows}),
            }
        return out


def test_soak_mixed_ranges_with_an_edge_killed_every_minute(
    soak_stack: StackInfo, tmp_path: Path
) -> None:
    state = Path(soak_stack.state_dir)
    client = FsnodeClient(
        ClientSettings(
            api_url=soak_stack.api, api_key=soak_stack.api_key, ca_cert=soak_stack.ca_cert
        ),
        workers=4,
    )
    files = []
    for i, size in enumerate(SIZES):
        data = os.urandom(size)
        path = tmp_path / f"seed-{i}.bin"
        path.write_bytes(data)
        record = client.upload(path, resume=False)
        share = client.share(record["file_id"], 24 * 3600)["share_url"]
        files.append(SoakFile(record["file_id"], data, share))

    traffic = Traffic(client, files, soak_stack.ca_cert, tmp_path)
    memory = MemoryLog()
    kills: list[dict[str, Any]] = []
    started = time.monotonic()
    traffic.start(READERS, upload_every=30.0, download_every=15.0)
    victims = ["edge-2", "edge-3"]
    next_kill = started + KILL_EVERY
    baseline: dict[str, int] = {}
    try:
        while time.monotonic() - started < SECONDS:
            memory.sample(state, started)
            if not baseline and time.monotonic() - started >= min(KILL_EVERY, SECONDS / 3):
                # After warm-up: caches and buffers have had time to fill.
                baseline = {name: rows[-1][2] for name, rows in memory.samples.items()}
            if time.monotonic() >= next_kill and time.monotonic() - started < SECONDS - 10:
                victim = victims[len(kills) % len(victims)]
                killed_at = time.monotonic() - started
                killed = _cli("local", "kill", victim, "--state-dir", str(state))
                assert killed.returncode == 0, killed.stderr
                time.sleep(DOWN_SECONDS)
                back = _cli("local", "restart", victim, "--state-dir", str(state))
                assert back.returncode == 0, back.stderr
                kills.append(
                    {
                        "edge": victim,
                        "killed_at": round(killed_at, 1),
                        "serving_again_at": round(time.monotonic() - started, 1),
                    }
                )
                next_kill += KILL_EVERY
            time.sleep(2.0)
        memory.sample(state, started)
    finally:
        traffic.join()

    # Zero lost files: every file is still listed and reads back whole and right.
    listed = {f["file_id"] for f in client.list_files()}
    lost = []
    for soak_file in traffic.snapshot():
        out = tmp_path / f"final-{soak_file.file_id}.bin"
        if soak_file.file_id not in listed:
            lost.append(f"{soak_file.file_id}: not listed")
            continue
        client.download(soak_file.file_id, out)
        if out.read_bytes() != soak_file.data:
            lost.append(f"{soak_file.file_id}: bytes differ")
    final = StackInfo.load(state)

    def all_live() -> bool:
        nodes = {n["node_id"]: n for n in client.cluster()["nodes"]}
        return all(nodes.get(e.node_id, {}).get("live") for e in final.edges)

    processes.wait_until(all_live, 60, "every edge to be live after the soak")
    cluster = {n["node_id"]: n for n in client.cluster()["nodes"]}

    witness = memory.samples["edge-1"]
    start_rss = baseline.get("edge-1", witness[0][2])
    end_rss = witness[-1][2]
    summary = {
        "seconds": round(time.monotonic() - started, 1),
        "files": len(traffic.snapshot()),
        "kills": kills,
        "traffic": traffic.tally.to_json(),
        "lost": lost,
        "rss": memory.summary(),
        "witness_rss_mib": {
            "after_warmup": round(start_rss / MIB, 1),
            "end": round(end_rss / MIB, 1),
            "bound": round((start_rss * RSS_GROWTH_FACTOR + RSS_GROWTH_SLACK) / MIB, 1),
        },
        "live_nodes": sum(1 for n in cluster.values() if n.get("live")),
    }
    (state / "soak.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\nsoak summary:\n" + json.dumps(summary, indent=2))

    tally = traffic.tally
    assert not tally.wrong, f"wrong bytes: {tally.wrong[:5]}"
    assert not tally.failed, f"reads that never succeeded: {tally.failed[:5]}"
    assert not lost, f"lost files: {lost}"
    assert len(kills) >= max(1, int(SECONDS // KILL_EVERY) - 1)
    assert sum(tally.reads.values()) > 0 and all(
        tally.reads[kind] > 0 for kind in ("share", "plan")
    ), tally.reads
    assert end_rss <= start_rss * RSS_GROWTH_FACTOR + RSS_GROWTH_SLACK, summary["witness_rss_mib"]
