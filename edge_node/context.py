"""What the edge's handlers share: one ``EdgeContext`` per app, under ``EDGE``."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from edge_node.cache import ChunkCache
from edge_node.early_reads import EarlyReads
from edge_node.folders import FolderIndex
from edge_node.manifests import ManifestStore
from edge_node.metrics import EdgeMetrics
from edge_node.origin import OriginFetcher
from edge_node.prefetch import PlaylistPrefetch
from edge_node.published_reader import PublishedReader
from edge_node.readahead import ReadAhead
from edge_node.shares import ShareKeys


@dataclass(slots=True)
class EdgeContext:
    """What the handlers need; built by ``main`` (or a test) and put on the app."""

    cache: ChunkCache
    manifests: ManifestStore
    keys: ShareKeys
    folders: FolderIndex
    metrics: EdgeMetrics = field(default_factory=EdgeMetrics)
    node_id: str | None = None
    # Kernel sendfile on plain-HTTP connections (the FSNODE_EDGE_HTTP_PORT listener).
    sendfile: bool = True
    readahead: ReadAhead = field(default_factory=ReadAhead)
    origin: OriginFetcher | None = None
    # Proxies in front that append the client to X-Forwarded-For (see share_targets.client_address).
    trusted_proxy_hops: int = 0
    # Fills a folder share's first segments as its media playlist is served.
    prefetch: PlaylistPrefetch | None = None
    # Starts a cold request's first data range beside its head and manifest reads.
    early: EarlyReads | None = None
    # Heads, manifests and listings from S3 (for /metrics).
    published: PublishedReader | None = None


EDGE = web.AppKey("edge", EdgeContext)
