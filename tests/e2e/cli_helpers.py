"""Helpers for the command-line tests: run a command, read its JSON, skip missing routes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import requests

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


def has_route(stack: StackInfo, method: str, path: str) -> bool:
    paths = requests.get(f"{stack.api}/openapi.json", timeout=30).json()["paths"]
    return method.lower() in paths.get(path, {})


def require_route(stack: StackInfo, method: str, path: str) -> None:
    """Skip until the control plane serves the route (issue #4 adds some of them)."""
    if not has_route(stack, method, path):
        pytest.skip(f"the control plane has no {method} {path} yet")


def random_file(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_ls_share_and_get_by_share_url(stack: StackInfo, data_dir: Path) -> None:
    original = random_file(data_dir, "movie.bin", 9 * MIB + 123)
    up = cli(stack, "upload", str(original), "--share", "--ttl", "600")
    assert up["name"] == "movie.bin" and up["size"] == original.stat().st_size
    assert up["parts_sent"] == 2 and up["parts_resumed"] == 0

    listed = {f["file_id"]: f for f in cli(stack, "ls")["files"]}
    assert listed[up["id"]]["name"] == "movie.bin"

    share = cli(stack, "share", up["id"], "--ttl", "300")
    assert share["share_url"].startswith(f"{stack.api}/s/{up['id']}?")

    out = data_dir / "via-share.bin"
    got = cli(stack, "get", share["share_url"], "-o", str(out))
    assert sha(out) == sha(original)
    assert got["size"] == original.stat().st_size
    edge_hosts = {e.url.removeprefix("https://") for e in stack.edges}
    assert set(got["sources"]) <= edge_hosts
    assert not list(data_dir.glob("via-share.bin.part*"))
