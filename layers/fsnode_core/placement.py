"""Which edges hold and serve a file: rendezvous hashing with bounded load, then distance.

Rendezvous (highest-random-weight) hashing ranks every node by a hash of
``(key, node_id)``: each key's order is stable, and when a node leaves only the
keys it ranked first move. The bounded-load rule pushes nodes loaded above
``load_factor`` times the mean behind the others, so one hot node sheds new work
while it has peers with room. A known client location then orders the chosen
nodes nearest first.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

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


def rank(
    key: str, nodes: Sequence[NodeRecord], *, load_factor: float = DEFAULT_LOAD_FACTOR
) -> list[NodeRecord]:
    """Every node in preference order for ``key`` under the bounded-load rule.

    Nodes whose load is above ``load_factor`` times the mean come after every node
    with room, each group in rendezvous order; when all are over the bound the plain
    rendezvous order stands (some node still has to serve).
    """
    ordered = rendezvous_order(key, nodes)
    if not ordered:
        return []
    mean = sum(max(node.load, 0.0) for node in ordered) / len(ordered)
    bound = load_factor * mean
    roomy = [node for node in ordered if node.load <= bound]
    crowded = [node for node in ordered if node.load > bound]
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
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
