"""Counters for ``GET /metrics`` (Prometheus text format 0.0.4)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from edge_node.cache import ChunkCache


@dataclass(slots=True)
class EdgeMetrics:
    """Request-level counters; cache-level ones are read from the cache itself."""

    bytes_served: int = 0
    origin_bytes: int = 0
    requests_in_flight: int = 0
    responses: Counter[int] = field(default_factory=Counter)

    def add_origin_bytes(self, count: int) -> None:
        self.origin_bytes += count

    def render(self, cache: ChunkCache) -> str:
        stats = cache.stats
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, value: float) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name} {value}")

        table: list[tuple[str, str, str, float]] = [
            ("cache_hits_total", "counter", "Chunk lookups served from disk.", stats.hits),
            ("cache_misses_total", "counter", "Chunk lookups that waited on a fill.", stats.misses),
            ("cache_fills_total", "counter", "Chunks fetched and stored.", stats.fills),
            ("cache_evictions_total", "counter", "Chunks dropped from the cache.", stats.evictions),
            (
                "integrity_failures_total", "counter", "Chunks that failed their SHA-256 check.",
                stats.integrity_failures,
            ),
            ("bytes_served_total", "counter", "Body bytes written to clients.", self.bytes_served),
            ("origin_bytes_total", "counter", "Bytes read from the origin.", self.origin_bytes),
            (
                "requests_in_flight", "gauge", "File requests being served.",
                self.requests_in_flight,
            ),
            ("fills_in_flight", "gauge", "Chunk fills in progress.", cache.inflight),
            ("cache_bytes", "gauge", "Bytes of chunks on disk.", cache.used_bytes),
            ("cache_max_bytes", "gauge", "The cache's byte cap.", cache.max_bytes),
            ("cache_chunks", "gauge", "Chunks on disk.", cache.chunk_count),
        ]
        for name, kind, help_text, value in table:
            metric(f"fsnode_edge_{name}", kind, help_text, value)
        lines.append("# HELP fsnode_edge_responses_total File responses by status.")
        lines.append("# TYPE fsnode_edge_responses_total counter")
        for status, count in sorted(self.responses.items()):
            lines.append(f'fsnode_edge_responses_total{{status="{status}"}} {count}')
        return "\n".join(lines) + "\n"
