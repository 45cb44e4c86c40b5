"""``fsnode get ID`` keeps going when an edge stops answering: next replica, then S3."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fsnode.localstack.stack import StackInfo
from tests.e2e.cli_helpers import MIB, cli, random_file, sha


@contextmanager
def frozen(*pids: int) -> Iterator[None]:
    """SIGSTOP an edge, its node agent and workers (its socket accepts, nothing
    answers); always SIGCONT it again. Each edge leads its own process group.

    The stack is shared by the session, so the edge must come back; a few seconds
    frozen is well inside the heartbeat timeout, so it is never marked dead.
    """
    stopped = []
    try:
        for pid in pids:
            os.killpg(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            os.killpg(pid, signal.SIGCONT)


def test_get_fails_over_when_an_edge_is_stopped(stack: StackInfo, tmp_path: Path) -> None:
    original = random_file(tmp_path, "failover.bin", 12 * MIB + 1)
    up = cli(stack, "upload", str(original))
    plan = cli(stack, "plan", up["id"])
    first_choice = plan["chunks"][0]["replicas"][0]
    edge = next(e for e in stack.edges if e.node_id == first_choice)

    out = tmp_path / "failover.out"
    with frozen(edge.pid):
        got = cli(stack, "get", up["id"], "-o", str(out), "--edge-timeout", "2")

    assert sha(out) == sha(original)
    assert got["failovers"] >= 1
    assert first_choice not in got["sources"]
    assert sum(got["sources"].values()) == got["chunks"]


def test_get_falls_back_to_s3_when_every_edge_is_stopped(stack: StackInfo, tmp_path: Path) -> None:
    original = random_file(tmp_path, "origin.bin", 6 * MIB)
    up = cli(stack, "upload", str(original))
    out = tmp_path / "origin.out"
    plan = cli(stack, "plan", up["id"])  # asked before freezing: the control plane answers
    assert all(c["s3_fallback"] for c in plan["chunks"])
    with frozen(*(edge.pid for edge in stack.edges)):
        got = cli(stack, "get", up["id"], "-o", str(out), "--edge-timeout", "2")
    assert sha(out) == sha(original)
    assert got["sources"] == {"s3": got["chunks"]}
