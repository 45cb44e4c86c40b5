"""The chunk cache's settings and counters (``FSNODE_CACHE_*``, edge_node/README.md)."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
# Largest block handed to the writer at once: bounds per-connection buffering.
BLOCK = 256 * 1024


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Cache bounds; see edge_node/README.md (FSNODE_CACHE_*, FSNODE_FILL_MEMORY_BYTES)."""

    max_bytes: int
    high_water: float = 0.90
    low_water: float = 0.80
    # Keep at least this share of the cache's filesystem free, whatever max_bytes says.
    min_free_ratio: float = 0.05
    fill_memory_bytes: int = 64 * MIB
    part_bytes: int = 2 * MIB
    max_parts: int = 4
    # A fill a reader starts asks first for this much at the reader's offset, so its
    # first byte waits for one short GET (0: every fill takes the even layout).
    first_part_bytes: int = 256 * 1024
    # ... or less when the reader reads less from there, but never under this: an
    # origin that builds a body before sending it (moto) answers a short GET sooner.
    min_first_part_bytes: int = 64 * 1024
    max_prefetch_fills: int = 4
    # The cache manager's period: free-space refresh, watermark pass, scrub step.
    maintain_interval: float = 5.0
    # Bytes of stored chunks the manager re-hashes per second (0: no scrub).
    scrub_bytes_per_second: int = 8 * MIB
    # How often a process flushes its hits into the shared LRU order.
    touch_interval: float = 1.0
    # How often a reader of another process's fill looks at the growing file.
    follow_interval: float = 0.002

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError("the cache needs a positive byte cap")
        if not 0 < self.low_water <= self.high_water <= 1:
            raise ValueError("watermarks must satisfy 0 < low <= high <= 1")
        if not 0 <= self.min_free_ratio < 1:
            raise ValueError("the minimum free share must be in [0, 1)")
        if self.part_bytes <= 0 or self.max_parts <= 0 or self.fill_memory_bytes <= 0:
            raise ValueError("fill parts and fill memory must be positive")
        if self.first_part_bytes < 0 or self.min_first_part_bytes <= 0:
            raise ValueError("the first part's size must not be negative, its minimum positive")
        if self.scrub_bytes_per_second < 0:
            raise ValueError("the scrub rate must not be negative")


@dataclass(slots=True)
class CacheStats:
    """This process's counters (each worker counts its own; see Metrics in the README)."""

    hits: int = 0
    misses: int = 0
    fills: int = 0
    # Misses served by following another worker's fill (cross-process collapsing).
    followed_fills: int = 0
    not_stored: int = 0
    evictions: int = 0
    integrity_failures: int = 0
    # Chunk files that failed their check when this process first opened them, or
    # in the scrub, or were found shorter than recorded: dropped and refetched.
    damaged_files: int = 0
    scrubbed_bytes: int = 0
    bytes_stored: int = 0
    prefetches: int = 0
    # Fills started by a client's request and by warm work (replication); with
    # ``prefetches`` they tell apart why the origin was read.
    demand_fills: int = 0
    warm_fills: int = 0
    # Chunks without a known hash that verified by having theirs recorded or matched.
    hashes_learned: int = 0
