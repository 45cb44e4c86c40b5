"""Start, watch and stop the local stack's processes.

Each child runs in its own session (process group), so stopping it also stops
anything it started, and a detached stack survives the command that started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fsnode.localstack.errors import StackError


@dataclass(slots=True)
class Child:
    name: str
    pid: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    # Where this run's output starts in a log shared with earlier runs (restarts).
    log_offset: int = 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the kernel says is free now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def spawn(name: str, argv: list[str], env: dict[str, str], log: Path) -> Child:
    """Start ``argv`` in a new session with stdout and stderr going to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name=name, pid=popen.pid, log=log, popen=popen, log_offset=offset)


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def wait_for_log_line(child: Child, marker: str, timeout: float) -> str:
    """The first line of the child's log containing ``marker``; fails if the child dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.log.exists():
            with child.log.open("rb") as handle:
                handle.seek(child.log_offset)
                text = handle.read().decode(errors="replace")
            for line in text.splitlines():
                if marker in line:
                    return line
        if not _running(child):
            raise StackError(f"{child.name} exited during start-up; see {child.log}")
        time.sleep(0.1)
    raise StackError(
        f"{child.name} did not print {marker!r} within {timeout:.0f} s; see {child.log}"
    )


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise StackError(f"{what} within {timeout:.0f} s")


def group_members(pgid: int) -> list[int]:
    """Every live process whose process group is ``pgid`` (a child's session: itself and
    whatever it started), zombies excluded."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The fields after the command name (which may hold spaces and parentheses).
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _group_alive(pgid: int) -> bool:
    return is_alive(pgid) or bool(group_members(pgid))


def stop(pids: list[int], grace: float = 15.0) -> list[int]:
    """SIGTERM each process group, wait up to ``grace`` seconds, SIGKILL what is left.

    Each pid leads its own process group (``spawn`` starts a new session), and the
    wait covers the whole group, not only its leader: a leader that exits on SIGTERM
    while a process it started keeps a port open is not stopped. Returns the groups
    that still had a live process after SIGKILL (should be none).
    """
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    _wait_groups(pids, grace)
    for pid in pids:
        if _group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
    _wait_groups(pids, 5.0)
    return [pid for pid in pids if _group_alive(pid)]


def _wait_groups(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_group_alive(pid) for pid in pids):
        _reap(pids)
        time.sleep(0.1)


def _running(child: Child) -> bool:
    if child.popen is not None:
        return child.popen.poll() is None
    return is_alive(child.pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap(pids: list[int]) -> None:
    # Children of this process must be waited for, or they linger as zombies.
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
