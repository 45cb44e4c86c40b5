"""How an answer's body blocks are written: their size and pacing per connection kind
(docs/PROTOCOL.md, "Client limits": memory per stalled reader)."""

from __future__ import annotations

from aiohttp import web

from edge_node.cache.config import BLOCK
from edge_node.listener import TLS_BLOCK


class BlockWriter:
    """Writes an answer's body blocks. On TLS each block is drained (below
    ``listener.TLS_WRITE_HIGH``) before the caller reads the next, so a client that
    stops reading holds one block, not aiohttp's 64 KiB of writes plus the TLS
    layer's; plain HTTP keeps aiohttp's own pacing (kernel sendfile, mostly)."""

    def __init__(self, request: web.Request, response: web.StreamResponse, tls: bool) -> None:
        self.response = response
        self.block = TLS_BLOCK if tls else BLOCK
        self._drain = request.writer.drain if tls else None

    async def write(self, data: memoryview | bytes) -> None:
        await self.response.write(data)
        if self._drain is not None:
            await self._drain()
