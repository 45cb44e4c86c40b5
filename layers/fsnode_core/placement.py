"""Which edges hold and serve a file: rendezvous hashing with bounded load, then distance.

Rendezvous (highest-random-weight) hashing ranks every node by a hash of
``(key, node_id)``: each key's order is stable, and when a node leaves only the
keys it ranked first move. The bounded-load rule (consistent hashing with bounded
loads, Mirrokni, Thorup and Zadimoghaddam, 2018) lets a node take one more request
only while its load after taking it stays within ``load_factor`` times the mean
load counting that request; nodes without room go behind the others, so a hot node
sheds new work while it has peers with room and no node ends above the bound. A
known client location then orders the chosen nodes nearest first.

Loads are open requests per node (the edges' heartbeats report requests in
flight), so one request adds one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Sequence

from fsnode_core.models import NodeRecord

DEFAULT_LOAD_FACTOR = 1.25
EARTH_RADIUS_KM = 6371.0088


def rendezvous_score(key: str, node_id: str) -> int:
    """The deterministic weight of ``node_id`` for ``key`` (higher ranks first)."""
    digest = hashlib.blake2b(f"{key}\x00{node_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_order(key: str, nodes: Iterable[NodeRecord]) -> list[NodeRecord]:
    """Nodes by descending rendezvous score for ``key`` (ties broken by node id)."""
    return sorted(nodes, key=lambda node: (-rendezvous_score(key, node.node_id), node.node_id))


def eligible(nodes: Iterable[NodeRecord], now: float, timeout: int) -> list[NodeRecord]:
    """Nodes that may take new work: active (not draining or dead) and recently heard."""
    return [node for node in nodes if node.is_live(now, timeout)]


def load_bound(loads: Collection[float], *, load_factor: float = DEFAULT_LOAD_FACTOR) -> float:
    """The most load any node may carry after taking one more request.

    ``load_factor`` times the mean load with that request counted; never less than
    the least-loaded node plus one, so some node always has room. (Mirrokni et al.
    round the bound up to a whole request for that; with 8 requests per node on
    average, rounding 1.25 * 8.001 up lets a node reach 11, 1.375 times the mean.)
    """
    if not loads:
        return 0.0
    clamped = [max(load, 0.0) for load in loads]
    return max(load_factor * (sum(clamped) + 1) / len(clamped), min(clamped) + 1)


def has_room(load: float, bound: float) -> bool:
    """Whether a node at ``load`` may take one more request under ``bound``."""
    # The tolerance keeps rounding in a float bound from turning away a node
    # whose load plus one equals it exactly.
    return max(load, 0.0) + 1 <= bound + 1e-9


def rank(
    key: str, nodes: Sequence[NodeRecord], *, load_factor: float = DEFAULT_LOAD_FACTOR
) -> list[NodeRecord]:
    """Every node in preference order for ``key`` under the bounded-load rule.

    Nodes with room for one more request (``load + 1 <= load_bound``) come first,
    then the others, each group in rendezvous order. The least-loaded node always
    has room, so the first choice never ends above the bound.
    """
    ordered = rendezvous_order(key, nodes)
    bound = load_bound([node.load for node in ordered], load_factor=load_factor)
    roomy = [node for node in ordered if has_room(node.load, bound)]
    crowded = [node for node in ordered if not has_room(node.load, bound)]
    return roomy + crowded


def choose(
    key: str,
    nodes: Sequence[NodeRecord],
    count: int,
    *,
    client_location: tuple[float, float] | None = None,
    load_factor: float = DEFAULT_LOAD_FACTOR,
) -> list[NodeRecord]:
    """The ``count`` preferred nodes for ``key``; nearest first when the client is located."""
    chosen = rank(key, nodes, load_factor=load_factor)[: max(count, 0)]
    if client_location is None:
        return chosen
    return by_distance(chosen, client_location)


def by_distance(nodes: Sequence[NodeRecord], origin: tuple[float, float]) -> list[NodeRecord]:
    """Nodes nearest ``origin`` first; nodes without a location keep their order, last."""
    located = [node for node in nodes if node.location is not None]
    unlocated = [node for node in nodes if node.location is None]
    located.sort(key=lambda node: haversine_km(origin, node.location))  # type: ignore[arg-type]
    return located + unlocated


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in km between two ``(lat, lng)`` points in degrees."""
    lat1, lng1 = map(math.radians, a)
    lat2, lng2 = map(math.radians, b)
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
