"""Placement, simulated: which node serves each request of a Zipf(1.0) mix, as
nodes fail and join, for three strategies:

- the project's placement (``fsnode_core.placement``: rendezvous hashing with
  bounded load),
- plain consistent hashing (a ring with virtual nodes, no load bound), the
  reference for the cache hit ratio,
- least-loaded (every request to the emptiest node), the load-balance ideal.

Load is the number of open streams per node: a stream stays open for the next
``streams_per_node * nodes`` arrivals, so the mean load is ``streams_per_node``.
Each node caches files in an LRU of ``cache_files`` entries; a request is a hit
when the chosen node already holds the file. Loads are exact and current (the
best case: a real control plane sees heartbeats that are seconds old).

Speed: the project's ``choose`` hashes every node for every request (about 2 ms
for 1,000 nodes in Python). The simulator keeps each file's order from the
project's own ``rendezvous_order`` until membership changes and applies the
project's bounded-load rule (``load_bound``, ``has_room``) on it; every
``verify_every``-th decision is checked against the project's ``choose`` with the
same loads, and the agreement is reported.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.common import BenchConfig, Unavailable, standalone
from bench.results import Goal, Row

NAMES = ("placement_max_mean", "placement_hit_vs_ch")
GOALS: dict[str, Goal | None] = {
    "placement_max_mean": Goal("value", "<=", 1.25),
    "placement_hit_vs_ch": Goal("ratio", ">=", 0.95),
}


@dataclass(frozen=True, slots=True)
class SimParams:
    nodes: int = 1000
    files: int = 100_000
    requests: int = 60_000
    streams_per_node: int = 8
    cache_files: int = 40
    churn_events: int = 10
    churn_fraction: float = 0.01  # of nodes failing, and as many joining, per event
    warmup_fraction: float = 0.3
    samples: int = 200
    verify_every: int = 200
    zipf_s: float = 1.0
    seed: int = 8
    time_limit: float = 300.0


class Strategy(Protocol):
    """The small interface the simulator drives."""

    name: str

    def membership(self, nodes: Sequence[str]) -> None:
        """The live nodes changed (called at start and after every churn event)."""

    def pick(self, key: str, loads: dict[str, int]) -> str:
        """The node that serves ``key`` given the current loads of live nodes."""


class ConsistentHashing:
    """A hash ring with virtual nodes; the owner of a key ignores load."""

    name = "consistent_hashing"

    def __init__(self, vnodes: int = 100) -> None:
        self.vnodes = vnodes
        self._points: list[int] = []
        self._owners: list[str] = []
        self._cache: dict[str, list[int]] = {}

    def _points_of(self, node: str) -> list[int]:
        found = self._cache.get(node)
        if found is None:
            found = [_hash64(f"{node}#{i}") for i in range(self.vnodes)]
            self._cache[node] = found
        return found

    def membership(self, nodes: Sequence[str]) -> None:
        ring = sorted((point, node) for node in nodes for point in self._points_of(node))
        self._points = [point for point, _ in ring]
        self._owners = [node for _, node in ring]

    def pick(self, key: str, loads: dict[str, int]) -> str:
        index = bisect.bisect(self._points, _hash64(key)) % len(self._points)
        return self._owners[index]


class LeastLoaded:
    """Every request to the node with the fewest open streams (ties: lowest id)."""

    name = "least_loaded"

    def membership(self, nodes: Sequence[str]) -> None:
        pass

    def pick(self, key: str, loads: dict[str, int]) -> str:
        return min(loads.items(), key=lambda item: (item[1], item[0]))[0]


class ProjectPlacement:
    """``fsnode_core.placement``: per-file rendezvous order, bounded-load rule."""

    name = "fsnode_placement"

    def __init__(self, module: Any, verify_every: int) -> None:
        self.module = module
        self.load_factor = float(getattr(module, "DEFAULT_LOAD_FACTOR", 1.25))
        self.verify_every = verify_every
        self.records: dict[str, Any] = {}
        self._orders: dict[str, list[Any]] = {}
        self._calls = 0
        self.checked = 0
        self.agreed = 0
        self.moved = 0  # requests served by a node other than the file's first in order

    def membership(self, nodes: Sequence[str]) -> None:
        from fsnode_core.models import NodeRecord

        self.records = {
            node: self.records.get(node)
            or NodeRecord(
                node_id=node,
                endpoint=f"https://{node}",
                region="sim",
                capacity_bytes=1,
                credential_sha256="",
            )
            for node in nodes
        }
        self._orders.clear()  # orders are per membership

    def pick(self, key: str, loads: dict[str, int]) -> str:
        for node, load in loads.items():
            self.records[node].load = float(load)
        order = self._orders.get(key)
        if order is None:
            order = self.module.rendezvous_order(key, list(self.records.values()))
            self._orders[key] = order
        # The project's own rule (``load_bound``, ``has_room``) on the cached order.
        bound = self.module.load_bound(loads.values(), load_factor=self.load_factor)
        chosen = next(
            (rec for rec in order if self.module.has_room(rec.load, bound)), order[0]
        ).node_id
        self._calls += 1
        self.moved += chosen != order[0].node_id
        if self.verify_every and self._calls % self.verify_every == 0:
            truth = self.module.choose(key, list(self.records.values()), 1)[0].node_id
            self.checked += 1
            self.agreed += truth == chosen
        return str(chosen)


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(slots=True)
class SimResult:
    strategy: str
    requests: int
    max_mean: float  # mean over samples of max/mean load
    worst_max_mean: float
    hit_ratio: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def simulate(strategy: Strategy, params: SimParams) -> SimResult:
    """Run one strategy over the same request stream and churn schedule (same seed)."""
    rng = random.Random(params.seed)
    weights = [1.0 / (rank**params.zipf_s) for rank in range(1, params.files + 1)]
    cum = list(itertools.accumulate(weights))
    # File ids are shuffled so popularity is not correlated with the id's hash.
    ids = [f"file-{i:06d}" for i in range(params.files)]
    rng.shuffle(ids)
    node_seq = itertools.count()
    live = [f"node-{next(node_seq):05d}" for _ in range(params.nodes)]
    strategy.membership(live)
    loads = dict.fromkeys(live, 0)
    caches: dict[str, OrderedDict[str, None]] = {node: OrderedDict() for node in live}
    window = params.streams_per_node * params.nodes
    open_streams: deque[str] = deque()
    churn_at = {
        params.requests * (k + 1) // (params.churn_events + 1) for k in range(params.churn_events)
    }
    warm = int(params.requests * params.warmup_fraction)
    sample_every = max(1, (params.requests - warm) // params.samples)
    hits = counted = 0
    ratios: list[float] = []
    started = time.monotonic()
    done = 0
    for i in range(params.requests):
        if time.monotonic() - started > params.time_limit:
            break  # bounded in time as well as count; the result says how many ran
        if i in churn_at:
            _churn(rng, params, live, loads, caches, open_streams, node_seq)
            strategy.membership(live)
        key = ids[bisect.bisect_left(cum, rng.random() * cum[-1])]
        node = strategy.pick(key, loads)
        loads[node] += 1
        open_streams.append(node)
        if len(open_streams) > window:
            gone = open_streams.popleft()
            if gone in loads:
                loads[gone] -= 1
        cache = caches[node]
        hit = key in cache
        if hit:
            cache.move_to_end(key)
        else:
            cache[key] = None
            if len(cache) > params.cache_files:
                cache.popitem(last=False)
        if i >= warm:
            counted += 1
            hits += hit
            if (i - warm) % sample_every == 0:
                mean = sum(loads.values()) / len(loads)
                ratios.append(max(loads.values()) / mean if mean else 1.0)
        done = i + 1
    return SimResult(
        strategy=strategy.name,
        requests=done,
        max_mean=sum(ratios) / len(ratios) if ratios else float("nan"),
        worst_max_mean=max(ratios) if ratios else float("nan"),
        hit_ratio=hits / counted if counted else float("nan"),
        seconds=time.monotonic() - started,
    )


def _churn(
    rng: random.Random,
    params: SimParams,
    live: list[str],
    loads: dict[str, int],
    caches: dict[str, OrderedDict[str, None]],
    open_streams: deque[str],
    node_seq: itertools.count[int],
) -> None:
    """Fail some nodes (their streams and cache are lost) and join as many empty ones."""
    count = max(1, round(params.churn_fraction * len(live)))
    for node in rng.sample(live, count):
        live.remove(node)
        del loads[node], caches[node]
    # Streams of a failed node end with it (the players reconnect as new requests).
    kept = [node for node in open_streams if node in loads]
    open_streams.clear()
    open_streams.extend(kept)
    for _ in range(count):
        node = f"node-{next(node_seq):05d}"
        live.append(node)
        loads[node] = 0
        caches[node] = OrderedDict()


def params_for(config: BenchConfig) -> SimParams:
    if config.tiny:
        return SimParams(
            nodes=40,
            files=2_000,
            requests=3_000,
            cache_files=10,
            churn_events=3,
            samples=50,
            verify_every=50,
            time_limit=30,
        )
    if config.quick:
        return SimParams(
            nodes=200,
            files=20_000,
            requests=16_000,
            cache_files=40,
            churn_events=5,
            samples=100,
            verify_every=100,
            time_limit=40,
        )
    return SimParams()


def run(config: BenchConfig, wanted: set[str]) -> list[Row]:
    try:
        from fsnode_core import placement
    except ImportError as exc:
        raise Unavailable(f"fsnode_core.placement cannot be imported: {exc}") from exc
    for needed in ("rendezvous_order", "choose", "load_bound", "has_room"):
        if not hasattr(placement, needed):
            raise Unavailable(f"fsnode_core.placement has no {needed}()")
    params = params_for(config)
    project = ProjectPlacement(placement, params.verify_every)
    ours = simulate(project, params)
    ch = simulate(ConsistentHashing(), params)
    least = simulate(LeastLoaded(), params)
    agreement = f"{project.agreed}/{project.checked} sampled decisions equal to placement.choose"
    shape = (
        f"{params.nodes} nodes, {params.files} files, {ours.requests} requests, "
        f"Zipf({params.zipf_s}), {params.churn_events} churn events"
    )
    return [
        Row(
            name="placement_max_mean",
            value=ours.max_mean,
            reference=ch.max_mean,
            goal=GOALS["placement_max_mean"],
            unit="max/mean open streams",
            note=(
                f"reference=consistent hashing; least-loaded {least.max_mean:.3f}; "
                f"worst sample {ours.worst_max_mean:.3f}; mean {params.streams_per_node} "
                f"streams per node; a node takes a request only if its load + 1 <= "
                f"{project.load_factor:g} x the mean counting it; {shape}; {agreement}"
            ),
        ),
        Row(
            name="placement_hit_vs_ch",
            value=ours.hit_ratio,
            reference=ch.hit_ratio,
            goal=GOALS["placement_hit_vs_ch"],
            unit="cache hit ratio",
            note=(
                f"reference=consistent hashing; least-loaded {least.hit_ratio:.3f}; "
                f"{params.cache_files} files cached per node; "
                f"{project.moved / max(ours.requests, 1):.0%} of requests served off "
                f"their file's first node (the bound at work)"
            ),
        ),
    ]


def main() -> int:
    return standalone(NAMES, GOALS, run, "placement simulation")


if __name__ == "__main__":
    raise SystemExit(main())
