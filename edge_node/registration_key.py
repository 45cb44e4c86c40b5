"""The idempotency key sent with ``POST /nodes/register``, kept in the state dir.

The control plane answers a register replayed with the same key (same endpoint and
public key, within its window) with the first answer: the same node id and
certificate. That is what a restart, or a retried call whose answer was lost,
wants. It is exactly wrong once the control plane has stopped accepting that node
(forgotten it, or declared it dead): a replay hands back the rejected identity.
So a re-registration for that reason first rotates the key, and the new key is on
disk (atomically, fsynced) before it is sent: a crash after the call cannot bring
the rejected key back, and a restart replays the new registration instead.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from edge_node import tls

KEY_FILE = "register.key"


def current(state_dir: Path) -> str:
    """The stored key, created on first use."""
    path = state_dir / KEY_FILE
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    return value or rotate(state_dir)


def rotate(state_dir: Path) -> str:
    """A new key, stored in place of the old one before anyone sends it."""
    value = uuid.uuid4().hex
    tls.write_private(state_dir / KEY_FILE, value.encode())
    return value
