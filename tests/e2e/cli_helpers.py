"""Helpers for the command-line tests: run a command, read its JSON answer or error."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fsnode.localstack.stack import StackInfo
from tests.e2e.conftest import run_cli

MIB = 1024 * 1024


def cli(stack: StackInfo, *args: str) -> Any:
    """Run a command with ``--json`` and return its parsed answer (asserting success)."""
    result = run_cli(*args, "--json", "--state-dir", stack.state_dir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def cli_error(stack: StackInfo, *args: str) -> dict[str, Any]:
    result = run_cli(*args, "--json", "--state-dir", stack.state_dir)
    assert result.returncode != 0, result.stdout
    return dict(json.loads(result.stderr.strip().splitlines()[-1])["error"])


def random_file(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
