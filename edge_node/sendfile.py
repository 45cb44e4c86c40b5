"""Kernel sendfile of a cached chunk to a plain-HTTP client.

``loop.sendfile`` always waits for one more writability event after the last
byte went out (it re-arms the writer after every successful call), so a range
the socket took whole still costs an epoll round trip and, worse, the answer
is not finished until the client has drained the socket buffer: the connection
sits idle instead of reading its next request. Here the first attempt is made
at once on the socket (the transport's buffer being empty, as ``loop.sendfile``
also requires), and only what the socket did not take goes through
``loop.sendfile``. nginx does the same: sendfile until EAGAIN, then wait.
"""

from __future__ import annotations

import asyncio
import os

from fsnode_core.errors import IntegrityError


async def send_range(transport: asyncio.Transport, fd: int, offset: int, count: int) -> int:
    """Send ``count`` bytes of ``fd`` at ``offset`` over a plain (not TLS) transport;
    the bytes sent, fewer than ``count`` only when the loop cannot sendfile (the
    caller writes the rest).

    Raises IntegrityError when the file ends early (damaged since it was checked):
    the client must not be left waiting for bytes that will never come.
    """
    done = 0
    sock = transport.get_extra_info("socket")
    if sock is not None and transport.get_write_buffer_size() == 0:
        out = sock.fileno()
        try:
            while done < count:
                sent = os.sendfile(out, fd, offset + done, count - done)
                if sent == 0:
                    raise IntegrityError("a cached chunk is shorter than recorded")
                done += sent
        except BlockingIOError:
            pass  # the socket is full: the loop waits for room
        if done == count:
            return done
    # The lease's descriptor (the cache closes it). Every read of a chunk file
    # names its offset (pread, sendfile), so sendfile moving the file offset is harmless.
    with open(fd, "rb", buffering=0, closefd=False) as handle:
        try:
            sent = await asyncio.get_running_loop().sendfile(
                transport, handle, offset + done, count - done
            )
        except NotImplementedError:
            return done
    if done + sent != count:
        raise IntegrityError("a cached chunk is shorter than recorded")
    return count
