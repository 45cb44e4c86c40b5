"""The local stack's AWS server (``fsnode.localstack.aws_server``: moto with the local
stack's additions) in a child process of its own, for what needs AWS without a whole
stack: tests and the plan benchmark (``fsnode local up`` starts its own, detached)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fsnode.localstack import processes
from fsnode.localstack.stack import FUNCTIONS_DIR, aws_env


@contextmanager
def aws_server_process(log: Path, region: str = "us-east-1", **extra_env: str) -> Iterator[str]:
    """The server on a free loopback port (``extra_env`` added to its environment),
    ready; its endpoint URL. Stopped on the way out; ``log`` gets its output."""
    port = processes.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    child = processes.spawn(
        "aws",
        [
            sys.executable,
            "-m",
            "fsnode.localstack.aws_server",
            "--port",
            str(port),
            "--functions-dir",
            str(FUNCTIONS_DIR),
        ],
        {**aws_env(endpoint, region), **extra_env},
        log,
    )
    try:
        processes.wait_for_log_line(child, "aws ready", 60)
        yield endpoint
    finally:
        left = processes.stop([child.pid])
        if left:
            raise RuntimeError(f"the AWS server (pid {child.pid}) did not stop")
