"""Counters for ``GET /metrics`` (Prometheus text format 0.0.4)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge_node.cache import ChunkCache
from edge_node.limits import ConnectionGuard

if TYPE_CHECKING:
    from edge_node.origin import OriginFetcher


@dataclass(slots=True)
class EdgeMetrics:
    """Request-level counters; cache and origin ones are read from those objects."""

    bytes_served: int = 0
    sendfile_bytes: int = 0
    origin_bytes: int = 0
    requests_in_flight: int = 0
    responses: Counter[int] = field(default_factory=Counter)
    # The client connections and their limits (set by whoever opens the listeners).
    connections: ConnectionGuard | None = None

    def add_origin_bytes(self, count: int) -> None:
        self.origin_bytes += count

    def render(self, cache: ChunkCache, origin: OriginFetcher | None = None) -> str:
        # Node-wide: every worker's and the node agent's counters, summed (the agent
        # does warm work and the scrub); the gauges below are this worker's.
        stats = cache.node_stats()
        lines: list[str] = []
        table: list[tuple[str, str, str, float]] = [
            ("cache_hits_total", "counter", "Chunk lookups served from cache.", stats.hits),
            ("cache_misses_total", "counter", "Chunk lookups that waited on a fill.", stats.misses),
            ("cache_fills_total", "counter", "Chunks fetched and verified.", stats.fills),
            (
                "cache_followed_fills_total",
                "counter",
                "Misses served from another worker's fill.",
                stats.followed_fills,
            ),
            (
                "cache_damaged_files_total",
                "counter",
                "Chunk files dropped after failing a check on disk.",
                stats.damaged_files,
            ),
            ("cache_scrubbed_bytes_total", "counter", "Bytes re-hashed.", stats.scrubbed_bytes),
            (
                "cache_not_stored_total",
                "counter",
                "Fills served but not kept (no room).",
                stats.not_stored,
            ),
            ("cache_prefetches_total", "counter", "Read-ahead fills started.", stats.prefetches),
            (
                "cache_demand_fills_total",
                "counter",
                "Fills started by a client request.",
                stats.demand_fills,
            ),
            ("cache_warm_fills_total", "counter", "Fills started by warm work.", stats.warm_fills),
            ("cache_evictions_total", "counter", "Chunks dropped from disk.", stats.evictions),
            (
                "integrity_failures_total",
                "counter",
                "Chunks that failed their SHA-256 check.",
                stats.integrity_failures,
            ),
            (
                "chunk_hashes_learned_total",
                "counter",
                "Chunks of unknown hash verified by recording or matching theirs.",
                stats.hashes_learned,
            ),
            ("bytes_served_total", "counter", "Body bytes written to clients.", self.bytes_served),
            (
                "sendfile_bytes_total",
                "counter",
                "Body bytes sent with kernel sendfile.",
                self.sendfile_bytes,
            ),
            ("origin_bytes_total", "counter", "Bytes read from the origin.", self.origin_bytes),
            (
                "requests_in_flight",
                "gauge",
                "File requests being served.",
                self.requests_in_flight,
            ),
            ("fills_in_flight", "gauge", "Chunk fills in progress.", cache.inflight),
            ("fill_buffer_bytes", "gauge", "Bytes held by fill buffers.", cache.fill_buffer_bytes),
            ("cache_bytes", "gauge", "Bytes of chunks on disk.", cache.used_bytes),
            ("cache_reserved_bytes", "gauge", "Disk bytes held for fills.", cache.reserved_bytes),
            ("cache_free_bytes", "gauge", "Bytes the disk cache may still take.", cache.free_bytes),
            ("cache_max_bytes", "gauge", "The disk cache's byte cap.", cache.max_bytes),
            ("cache_chunks", "gauge", "Chunks on disk.", cache.chunk_count),
        ]
        if origin is not None:
            table += [
                (
                    "origin_requests_total",
                    "counter",
                    "Ranged GETs sent to the origin.",
                    origin.requests,
                ),
                ("origin_retries_total", "counter", "Origin reads retried.", origin.retries),
                ("origin_failures_total", "counter", "Origin reads given up.", origin.failures),
            ]
        for name, kind, help_text, value in table:
            full = f"fsnode_edge_{name}"
            lines += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}", f"{full} {value}"]
        lines.append("# HELP fsnode_edge_responses_total File responses by status.")
        lines.append("# TYPE fsnode_edge_responses_total counter")
        for status, count in sorted(self.responses.items()):
            lines.append(f'fsnode_edge_responses_total{{status="{status}"}} {count}')
        if self.connections is not None:
            lines += _connection_lines(self.connections)
        return "\n".join(lines) + "\n"


def _connection_lines(guard: ConnectionGuard) -> list[str]:
    lines = [
        "# HELP fsnode_edge_connections_open Client connections open.",
        "# TYPE fsnode_edge_connections_open gauge",
        f"fsnode_edge_connections_open {guard.open_connections}",
        "# HELP fsnode_edge_connections_closed_total Client connections closed by a limit.",
        "# TYPE fsnode_edge_connections_closed_total counter",
    ]
    for reason, count in sorted(guard.closed.items()):
        lines.append(f'fsnode_edge_connections_closed_total{{reason="{reason}"}} {count}')
    lines += [
        "# HELP fsnode_edge_memory_releases_total Freed memory given back after clients left.",
        "# TYPE fsnode_edge_memory_releases_total counter",
        f"fsnode_edge_memory_releases_total {guard.memory_releases}",
    ]
    return lines
