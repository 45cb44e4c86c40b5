"""The placement simulator's reference strategies and its bookkeeping."""

from __future__ import annotations

from bench.placement_sim import ConsistentHashing, LeastLoaded, SimParams, simulate


def test_consistent_hashing_moves_only_a_leaving_nodes_keys() -> None:
    ring = ConsistentHashing(vnodes=50)
    nodes = [f"n{i}" for i in range(20)]
    ring.membership(nodes)
    keys = [f"file-{i}" for i in range(500)]
    before = {key: ring.pick(key, {}) for key in keys}
    ring.membership([node for node in nodes if node != "n3"])
    after = {key: ring.pick(key, {}) for key in keys}
    moved = [key for key in keys if before[key] != after[key]]
    assert moved and all(before[key] == "n3" for key in moved)


def test_least_loaded_takes_the_emptiest() -> None:
    assert LeastLoaded().pick("k", {"a": 3, "b": 1, "c": 1}) == "b"


def test_simulation_counts_are_sane() -> None:
    params = SimParams(nodes=10, files=200, requests=500, streams_per_node=4, cache_files=5,
                       churn_events=2, samples=20, verify_every=0, time_limit=30)
    result = simulate(LeastLoaded(), params)
    assert result.requests == 500
    assert 0.0 <= result.hit_ratio <= 1.0
    assert result.max_mean >= 1.0
