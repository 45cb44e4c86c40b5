"""Giving freed memory back to the system after connections close."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Libc:
    trim: Callable[[int], int] | None


def _load_libc() -> _Libc:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    return _Libc(trim=trim)


_LIBC = _load_libc()


def release_free_memory() -> None:
    """Give freed memory back to the system: collect the cycles a closed connection
    leaves (TLS and request objects), then return free heap pages (glibc keeps them
    otherwise, and RSS stays near its peak after a burst of clients)."""
    gc.collect()
    if _LIBC.trim is not None:
        _LIBC.trim(0)
