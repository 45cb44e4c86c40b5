"""One edge worker process for the shared-cache tests: the real edge app on a plain
HTTP port, over a chunk cache rooted where its siblings' is, reading the origin
through the test's proxy (the published heads and manifests straight from moto, at
``AWS_ENDPOINT_URL``). ``python tests/integration/cache_worker.py SPEC.json``;
prints ``ready PORT`` and serves until SIGTERM.

SPEC: ``root`` (the shared cache root), ``bucket`` (where files are published),
``origin`` (proxy URL), ``recover`` (the node's first process), ``max_bytes``,
``part_bytes``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from aiohttp import web

# Run as a script: the repository root, for ``tests.integration`` and ``edge_node``.
sys.path.insert(0, str(Path(__file__).parents[2]))

from edge_node.cache import CacheConfig, ChunkCache
from edge_node.chunk_hashes import ChunkHashRecorder
from edge_node.context import EdgeContext
from edge_node.folders import FolderIndex
from edge_node.manifests import ManifestStore
from edge_node.origin import OriginFetcher
from edge_node.published_reader import PublishedReader
from edge_node.server import build_app
from edge_node.shares import ShareKeys
from tests.integration.edge_publishing import share_public_keys


async def serve(spec: dict[str, object]) -> None:
    meta = OriginFetcher()
    published = PublishedReader(meta, str(spec["bucket"]))
    store = ManifestStore(published, 30.0)
    origin = OriginFetcher(endpoint_url=str(spec["origin"]))
    config = CacheConfig(
        max_bytes=int(spec["max_bytes"]),  # type: ignore[call-overload]
        part_bytes=int(spec["part_bytes"]),  # type: ignore[call-overload]
        # Two even parts per chunk and no lead part: a test that pauses the origin's
        # answers after PART + 64 KiB holds a fill with its first PART bytes in place
        # (parts of PART bytes each would all come whole, and the fill would end).
        max_parts=2,
        first_part_bytes=0,
        min_free_ratio=0.0,
        maintain_interval=0.2,
    )
    cache = ChunkCache(Path(str(spec["root"])), origin, config, ChunkHashRecorder(store))
    await cache.open(recover=bool(spec["recover"]), manage=bool(spec["recover"]))
    context = EdgeContext(
        cache=cache,
        manifests=store,
        keys=ShareKeys(share_public_keys()),
        folders=FolderIndex(published, 30.0),
        origin=origin,
        published=published,
    )
    runner = web.AppRunner(build_app(context), shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"ready {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    await store.close()
    await cache.close()
    await origin.close()
    await meta.close()


if __name__ == "__main__":
    asyncio.run(serve(json.loads(Path(sys.argv[1]).read_text())))
