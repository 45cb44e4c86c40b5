"""Identifiers: generated opaque ids, validated before they touch a key or a path."""

from __future__ import annotations

import re
import secrets

from fsnode_core.errors import InvalidInput

# Lowercase hex only: no dots, slashes or separators can reach a cache path or a key.
_ID = re.compile(r"[0-9a-f]{32}")


def new_id() -> str:
    """A fresh random 128-bit id as 32 lowercase hex characters."""
    return secrets.token_hex(16)


def new_sortable_id(now: int) -> str:
    """A fresh id that sorts by ``now`` (seconds) first: 8 hex digits of time, then 96
    random bits (work items: a node's oldest work is read first)."""
    return f"{now & 0xFFFFFFFF:08x}{secrets.token_hex(12)}"


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a well-formed id, else raise InvalidInput."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidInput(f"{what} must be 32 lowercase hex characters", field=what)
    return value
