"""Placement: rendezvous hashing with bounded load, and distance ordering."""

from __future__ import annotations

import random
from typing import Any

from fsnode_core import placement
from fsnode_core.models import NODE_ACTIVE, NODE_DEAD, NODE_DRAINING, NodeRecord
from hypothesis import given, settings
from hypothesis import strategies as st

_ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


def node(node_id: str, load: float = 0.0, **kw: Any) -> NodeRecord:
    return NodeRecord(
        node_id=node_id,
        endpoint=f"https://{node_id[:8]}.test:443",
        region="r",
        capacity_bytes=1,
        credential_sha256="x",
        load=load,
        **kw,
    )


fleets = st.lists(
    st.builds(node, _ids, st.floats(min_value=0, max_value=100, allow_nan=False)),
    min_size=1,
    max_size=12,
    unique_by=lambda n: n.node_id,
)


@given(fleets, _ids)
def test_deterministic_and_order_independent(nodes: list[NodeRecord], key: str) -> None:
    first = [n.node_id for n in placement.rank(key, nodes)]
    assert first == [n.node_id for n in placement.rank(key, list(reversed(nodes)))]
    assert sorted(first) == sorted(n.node_id for n in nodes)


@given(fleets, _ids)
def test_first_choice_respects_the_load_bound(nodes: list[NodeRecord], key: str) -> None:
    mean_with_it = (sum(n.load for n in nodes) + 1) / len(nodes)
    chosen = placement.choose(key, nodes, 1)[0]
    # The least-loaded node always has room, so the choice never ends above the
    # bound: load factor times the mean counting this request, or least load + 1.
    least = min(n.load for n in nodes)
    assert chosen.load + 1 <= max(placement.DEFAULT_LOAD_FACTOR * mean_with_it, least + 1) + 1e-9


@given(fleets, _ids)
def test_rank_puts_every_node_with_room_first_in_rendezvous_order(
    nodes: list[NodeRecord], key: str
) -> None:
    bound = placement.load_bound([n.load for n in nodes])
    ranked = placement.rank(key, nodes)
    room = [placement.has_room(n.load, bound) for n in ranked]
    assert room == sorted(room, reverse=True)  # all with room, then all without
    order = [n.node_id for n in placement.rendezvous_order(key, nodes)]
    for group in (True, False):
        ids = [n.node_id for n, ok in zip(ranked, room, strict=True) if ok is group]
        assert ids == [i for i in order if i in ids]


@settings(max_examples=40)
@given(
    st.integers(min_value=2, max_value=24),
    st.integers(min_value=1, max_value=12),
    st.randoms(use_true_random=False),
)
def test_streams_placed_one_by_one_never_exceed_the_bound(
    count: int, per_node: int, rng: random.Random
) -> None:
    """Requests arrive and end; every placement leaves max/mean within the factor.

    Once the fleet carries ``per_node`` open streams per node, a node may end a
    placement at most at 1.25 times the mean counting that stream: the check that a
    node AT the bound is turned away (admitting it gave 1.375 at 8 per node).
    """
    nodes = [node(f"{i:032x}") for i in range(count)]
    open_streams: list[NodeRecord] = []
    for step in range(count * per_node * 3):
        if len(open_streams) >= count * per_node:
            gone = open_streams.pop(rng.randrange(len(open_streams)))
            gone.load -= 1
        total = sum(n.load for n in nodes) + 1
        least = min(n.load for n in nodes)
        chosen = placement.choose(f"file-{rng.randrange(50)}", nodes, 1)[0]
        chosen.load += 1
        open_streams.append(chosen)
        limit = max(placement.DEFAULT_LOAD_FACTOR * total / count, least + 1)
        assert chosen.load <= limit + 1e-9, (step, chosen.load, limit)


def test_a_node_exactly_at_the_bound_takes_no_more() -> None:
    # Mean 8 per node: 1.25 x 8 = 10, so a node at 10 must not reach 11.
    nodes = [node(f"{i:032x}", load=8.0) for i in range(8)]
    key = next(
        f"{k:032x}"
        for k in range(200)
        if placement.choose(f"{k:032x}", nodes, 1)[0].node_id == nodes[0].node_id
    )
    nodes[0].load, nodes[1].load, nodes[2].load = 10.0, 7.0, 7.0  # the mean is still 8
    assert placement.choose(key, nodes, 1)[0].node_id != nodes[0].node_id
    nodes[0].load = 9.0  # 9 + 1 = 10 <= 1.25 x (63 + 1) / 8: it has room again
    assert placement.choose(key, nodes, 1)[0].node_id == nodes[0].node_id


def test_load_bound_leaves_room_on_an_idle_fleet() -> None:
    assert placement.load_bound([0.0, 0.0, 0.0]) == 1.0  # least load + 1
    assert placement.has_room(0.0, placement.load_bound([0.0] * 1000))
    assert placement.load_bound([8.0] * 1000) == 1.25 * 8001 / 1000
    assert placement.load_bound([]) == 0.0


@settings(max_examples=50)
@given(
    st.lists(_ids, min_size=3, max_size=10, unique=True),
    st.lists(_ids, min_size=20, max_size=60, unique=True),
    st.data(),
)
def test_minimal_movement_when_a_node_leaves(
    node_ids: list[str], keys: list[str], data: st.DataObject
) -> None:
    nodes = [node(i) for i in node_ids]
    leaving = data.draw(st.sampled_from(node_ids))
    rest = [n for n in nodes if n.node_id != leaving]
    for key in keys:
        before = placement.choose(key, nodes, 1)[0].node_id
        after = placement.choose(key, rest, 1)[0].node_id
        if before != leaving:
            assert after == before  # only keys owned by the leaving node move


@settings(max_examples=50)
@given(
    st.lists(_ids, min_size=3, max_size=10, unique=True),
    st.lists(_ids, min_size=20, max_size=60, unique=True),
    _ids,
)
def test_minimal_movement_when_a_node_joins(
    node_ids: list[str], keys: list[str], joining: str
) -> None:
    nodes = [node(i) for i in node_ids if i != joining]
    grown = [*nodes, node(joining)]
    for key in keys:
        before = placement.choose(key, nodes, 1)[0].node_id
        after = placement.choose(key, grown, 1)[0].node_id
        assert after in (before, joining)  # a key moves only to the new node


def test_keys_spread_over_nodes() -> None:
    nodes = [node(f"{i:032x}") for i in range(4)]
    owners = [placement.choose(f"{k:032x}", nodes, 1)[0].node_id for k in range(2000)]
    counts = [owners.count(n.node_id) for n in nodes]
    assert min(counts) > 350  # about 500 each


def test_overloaded_node_sheds_while_others_have_room() -> None:
    nodes = [node(f"{i:032x}", load=1.0) for i in range(3)]
    key = next(
        f"{k:032x}"
        for k in range(100)
        if placement.choose(f"{k:032x}", nodes, 1)[0].node_id == nodes[0].node_id
    )
    nodes[0].load = 10.0
    assert placement.choose(key, nodes, 1)[0].node_id != nodes[0].node_id
    every = [node(f"{i:032x}", load=10.0) for i in range(3)]
    assert len(placement.choose(key, every, 3)) == 3  # all crowded: still served


def test_only_live_active_nodes_are_eligible() -> None:
    fresh = node("a" * 32, last_heartbeat=1000)
    stale = node("b" * 32, last_heartbeat=900)
    draining = node("c" * 32, last_heartbeat=1000, status=NODE_DRAINING)
    dead = node("d" * 32, last_heartbeat=1000, status=NODE_DEAD)
    assert fresh.status == NODE_ACTIVE
    eligible = placement.eligible([fresh, stale, draining, dead], now=1010, timeout=30)
    assert [n.node_id for n in eligible] == [fresh.node_id]


def test_distance_orders_the_chosen_nodes() -> None:
    berlin = node("1" * 32, lat=52.52, lng=13.40)
    tokyo = node("2" * 32, lat=35.68, lng=139.69)
    nowhere = node("3" * 32)
    paris = (48.86, 2.35)
    ordered = placement.by_distance([nowhere, tokyo, berlin], paris)
    assert [n.node_id for n in ordered] == [berlin.node_id, tokyo.node_id, nowhere.node_id]
    chosen = placement.choose("k", [berlin, tokyo], 2, client_location=(35.0, 139.0))
    assert chosen[0].node_id == tokyo.node_id
    assert abs(placement.haversine_km((52.52, 13.40), (48.86, 2.35)) - 878) < 5
