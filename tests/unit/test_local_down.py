"""``fsnode local down`` returns only when every process of the stack has exited."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from fsnode.localstack import processes
from fsnode.localstack.stack import StackInfo

# A leader that exits at once on SIGTERM, leaving behind a process it started (in its
# process group) that ignores SIGTERM: the shape of a server whose worker keeps a port.
_LEADER = r"""
import signal, subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", '''
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("worker ignores SIGTERM", flush=True)
time.sleep(3600)
'''])
print(f"worker pid={worker.pid}", flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(3600)
"""


def _start(tmp_path: Path) -> tuple[processes.Child, int]:
    child = processes.spawn(
        "leader", [sys.executable, "-c", _LEADER], {}, tmp_path / "logs" / "leader.log"
    )
    line = processes.wait_for_log_line(child, "worker pid=", 30)
    processes.wait_for_log_line(child, "worker ignores SIGTERM", 30)
    match = re.search(r"pid=(\d+)", line)
    assert match
    return child, int(match.group(1))


def test_stop_waits_for_the_whole_process_group_and_kills_what_ignores_sigterm(
    tmp_path: Path,
) -> None:
    child, worker = _start(tmp_path)
    assert set(processes.group_members(child.pid)) == {child.pid, worker}
    assert processes.stop([child.pid], grace=0.5) == []
    assert not processes.is_alive(worker)
    assert processes.group_members(child.pid) == []


def test_local_down_returns_when_every_process_has_exited(tmp_path: Path) -> None:
    child, worker = _start(tmp_path)
    StackInfo(
        api="http://127.0.0.1:1",
        api_key="",
        ca_cert="",
        aws_endpoint="",
        region="us-east-1",
        bucket="",
        state_dir=str(tmp_path),
        processes=[{"name": "leader", "pid": child.pid, "log": str(child.log)}],
    ).save()
    down = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsnode.cli",
            "local",
            "down",
            "--state-dir",
            str(tmp_path),
            "--grace",
            "0.5",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["left"] == []
    # Checked right after the command returned: nothing of the stack is left.
    assert not processes.is_alive(worker)
    assert not processes.is_alive(child.pid)
