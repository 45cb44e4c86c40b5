"""Attributes of moto's classes replaced in this process, and put back on request.

The local stack's S3 patches (``s3_ranges``, ``s3_checksums``) each keep one
``Patches``: ``install`` sets through it once, ``uninstall`` undoes it (tests that
patch moto in their own process).
"""

from __future__ import annotations

import inspect
from typing import Any


class Patches:
    """Replaced class attributes with their originals, restored by ``undo``."""

    def __init__(self) -> None:
        self._originals: list[tuple[Any, str, Any]] = []

    @property
    def active(self) -> bool:
        return bool(self._originals)

    def set(self, owner: Any, name: str, value: Any) -> None:
        # getattr_static: the attribute itself (a property stays a property).
        self._originals.append((owner, name, inspect.getattr_static(owner, name)))
        setattr(owner, name, value)

    def undo(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()
