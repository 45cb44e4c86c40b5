"""Which chunks read from disk are worth copying into the memory tier.

Copying a chunk into memory means reading all of it (4 MiB by default), however
little of it a request wanted. When the hot set is larger than the memory tier,
promoting on every repeated disk hit makes the tier churn: each promotion pushes
out another chunk that is just as hot, and a 64 KiB range costs a 4 MiB read.
Two rules stop that:

- Frequency (as TinyLFU): a chunk goes in only if it was hit more often,
  recently, than every chunk it would push out. Counts are halved once the hits
  since the last halving reach a few times the number of chunks counted (or the
  table reaches ``MAX_KEYS``), so old popularity fades; a chunk that leaves the
  cache is forgotten, and a halving drops chunks hit once, so the table stays
  bounded.
- Budget: promotions are paid for by disk hits. Every byte served from disk
  earns a quarter byte of credit (capped at the tier's size, which is also where
  it starts, so an empty tier fills at once); a promotion spends its chunk's size.
  Even a pathological access pattern reads at most 25% more from disk.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

# Bytes of promotion earned per byte served from disk.
CREDIT_SHARE = 0.25
# Halve the counts after this many hits per counted chunk (plus a floor).
_AGE_FACTOR = 8
_AGE_FLOOR = 64
MAX_KEYS = 1 << 16


class MemoryAdmission:
    def __init__(self, capacity_bytes: int) -> None:
        self._capacity = capacity_bytes
        self._counts: dict[Hashable, int] = {}
        self._since_aging = 0
        self.credit = float(capacity_bytes)

    def hit(self, key: Hashable) -> None:
        """Count a hit on ``key`` (memory or disk)."""
        self._counts[key] = self._counts.get(key, 0) + 1
        self._since_aging += 1
        size = len(self._counts)
        if self._since_aging >= _AGE_FACTOR * size + _AGE_FLOOR or size > MAX_KEYS:
            self._age()

    def count(self, key: Hashable) -> int:
        return self._counts.get(key, 0)

    def served_from_disk(self, count: int) -> None:
        self.credit = min(float(self._capacity), self.credit + count * CREDIT_SHARE)

    def affords(self, size: int) -> bool:
        """Whether the budget covers a promotion of ``size`` bytes (a cheap first test)."""
        return self.credit >= size

    def admits(self, key: Hashable, size: int, victims: Iterable[Hashable]) -> bool:
        """Whether ``key`` may be promoted, pushing out ``victims`` (maybe none)."""
        return self.credit >= size and self.hotter_than(key, victims)

    def hotter_than(self, key: Hashable, victims: Iterable[Hashable]) -> bool:
        mine = self.count(key)
        return all(self.count(victim) < mine for victim in victims)

    def spend(self, size: int) -> None:
        self.credit -= size

    def forget(self, key: Hashable) -> None:
        self._counts.pop(key, None)

    def __len__(self) -> int:
        return len(self._counts)

    def _age(self) -> None:
        self._since_aging = 0
        self._counts = {key: count // 2 for key, count in self._counts.items() if count > 1}
