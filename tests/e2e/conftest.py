"""The local stack, started as a user would: ``fsnode local up --detach``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fsnode.localstack import processes
from fsnode.localstack.stack import StackInfo
from tests.e2e.browser import browser  # noqa: F401  (a fixture for every module)

FSNODE = [sys.executable, "-m", "fsnode.cli"]


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the ``fsnode`` command line and return its result (never raises on failure)."""
    return subprocess.run(
        [*FSNODE, *args], capture_output=True, text=True, timeout=timeout, env=cli_env()
    )


def cli_env() -> dict[str, str]:
    # No settings may leak in from the developer's shell or their last stack.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FSNODE_", "AWS_"))}
    env["FSNODE_HOME"] = os.environ["FSNODE_TEST_HOME"]
    return env


@pytest.fixture(scope="session", autouse=True)
def fsnode_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("fsnode-home")
    os.environ["FSNODE_TEST_HOME"] = str(home)
    yield home


def _up(state_dir: Path, *flags: str) -> StackInfo:
    """``fsnode local up --detach`` with ``flags``; the test fails, with the stack's
    logs, if it does not come up."""
    up = run_cli("local", "up", "--detach", "--state-dir", str(state_dir), *flags, "--json")
    if up.returncode != 0:
        logs = "\n".join(
            f"--- {log.name}\n{log.read_text()[-3000:]}"
            for log in sorted((state_dir / "logs").glob("*.log"))
        )
        pytest.fail(f"fsnode local up failed:\n{up.stderr}\n{logs}")
    return StackInfo.load(state_dir)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    state_dir = tmp_path_factory.mktemp("stack")
    info = _up(state_dir)
    try:
        yield info
    finally:
        down = run_cli("local", "down", "--state-dir", str(state_dir), "--json")
        assert down.returncode == 0, down.stderr
        assert json.loads(down.stdout)["left"] == []
        assert not [pid for pid in info.pids() if processes.is_alive(pid)]


@contextmanager
def own_stack(
    tmp_path_factory: pytest.TempPathFactory, name: str, *flags: str
) -> Iterator[StackInfo]:
    """A local stack of a test module's own (``fsnode local up --detach`` with
    ``flags``), stopped whole afterwards."""
    state_dir = tmp_path_factory.mktemp(name)
    info = _up(state_dir, *flags)
    try:
        yield info
    finally:
        run_cli("local", "down", "--state-dir", str(state_dir))
        assert not [pid for pid in StackInfo.load(state_dir).pids() if processes.is_alive(pid)]
