"""Reading cached chunk files from the event loop when the page cache has them.

A read handed to a thread costs a pool submit, a worker wake-up and a wake-up of
the loop: for a hot chunk that is more CPU than the copy itself (py-spy put the
thread hops at about a third of the edge's samples under 64 KiB HTTPS ranges).
``preadv`` with ``RWF_NOWAIT`` (Linux 4.14+) copies from the page cache or fails
with EAGAIN instead of waiting for the disk, so a hit on hot data costs one
syscall on the loop, and only data that needs the disk goes to a thread. Where
the flag is missing or refused, every read goes to a thread, as before.
"""

from __future__ import annotations

import asyncio
import errno
import os

_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)
_UNSUPPORTED = {errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS}


def read_if_cached(fd: int, size: int, offset: int) -> memoryview | None:
    """``size`` bytes at ``offset`` if all are in the page cache, else None."""
    global _NOWAIT
    flags = _NOWAIT
    if flags is None or size <= 0:
        return None
    buffer = bytearray(size)
    try:
        count = os.preadv(fd, [buffer], offset, flags)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:  # this kernel or filesystem cannot do it
            _NOWAIT = None
            return None
        raise
    if count != size:  # partly cached (or a short file): the thread reads it all
        return None
    return memoryview(buffer)


async def pread(fd: int, size: int, offset: int) -> memoryview | bytes:
    """``os.pread``, on the loop when the page cache has the bytes, else in a thread."""
    data = read_if_cached(fd, size, offset)
    if data is not None:
        return data
    return await asyncio.to_thread(os.pread, fd, size, offset)
