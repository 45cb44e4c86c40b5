"""Small JSON state files that let uploads, downloads and syncs resume where they stopped."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from fsnode.settings import fsnode_home


def state_path(kind: str, key: str) -> Path:
    """``FSNODE_HOME/KIND/<sha256(key)>.json``: one file per uploaded path or synced folder."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return fsnode_home() / kind / f"{digest}.json"


def load(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none or it is unreadable (then start over)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def save(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write must never leave a half record to resume from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    # Owner-only: an upload record holds presigned URLs that grant writes for an hour.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(data, sort_keys=True))
    tmp.replace(path)


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def file_sha256(path: Path, block: int = 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while data := handle.read(block):
            digest.update(data)
    return digest.hexdigest()
