"""What the local stack raises when it cannot do what was asked."""

from __future__ import annotations


class StackError(Exception):
    """A stack already running, a process that would not start or is not in the stack,
    a missing tool: the command line reports it as a clean error (a bug still shows its
    traceback)."""
