"""The node's chunk cache, shared by every worker process.

Modules, one job each: ``config`` (settings, counters), ``layout`` (keys, paths,
the startup scan, file operations), ``disk_index`` (the shared SQLite index: entries,
LRU, reservations, eviction), ``fill`` (buffer, budget, verified ranged fetch),
``fill_lock`` (one fill per chunk across processes, following another's fill),
``leases`` (a chunk held while served), ``open_files`` (verified descriptors kept
open), ``manager`` (watermarks, scrub, LRU flush), ``store`` (fills and first
opens) and ``facade`` (``ChunkCache``,
what the server uses). edge_node/README.md (Cache) tells the whole story.
"""

from edge_node.cache.config import CacheConfig, CacheStats
from edge_node.cache.facade import ChunkCache
from edge_node.cache.fill import FillBuffer
from edge_node.cache.layout import ChunkKey, key_for, version_tag
from edge_node.cache.leases import ChunkLease, DiskLease

__all__ = [
    "CacheConfig",
    "CacheStats",
    "ChunkCache",
    "ChunkKey",
    "ChunkLease",
    "DiskLease",
    "FillBuffer",
    "key_for",
    "version_tag",
]
