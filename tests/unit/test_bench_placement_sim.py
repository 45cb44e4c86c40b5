"""The placement simulator's reference strategies and its bookkeeping."""

from __future__ import annotations

import os

from fsnode_core import placement

from bench.common import thread_affinities
from bench.placement_sim import (
    ConsistentHashing,
    LeastLoaded,
    ProjectPlacement,
    SimParams,
    simulate,
)


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
    params = SimParams(
        nodes=10,
        files=200,
        requests=500,
        streams_per_node=4,
        cache_files=5,
        churn_events=2,
        samples=20,
        verify_every=0,
        time_limit=30,
    )
    result = simulate(LeastLoaded(), params)
    assert result.requests == 500
    assert 0.0 <= result.hit_ratio <= 1.0
    assert result.max_mean >= 1.0


def test_the_simulated_placement_is_the_projects_and_keeps_the_bound() -> None:
    # Every decision checked against placement.choose; no churn, so after warm-up
    # the mean is exactly 8 open streams per node and the bound allows 10.
    params = SimParams(
        nodes=12,
        files=300,
        requests=600,
        streams_per_node=8,
        cache_files=5,
        churn_events=0,
        samples=40,
        verify_every=1,
        time_limit=30,
    )
    project = ProjectPlacement(placement, params.verify_every)
    result = simulate(project, params)
    assert project.checked == result.requests == 600
    assert project.agreed == project.checked
    assert result.worst_max_mean <= placement.DEFAULT_LOAD_FACTOR + 1e-9
    assert project.moved > 0  # the bound was at work: some requests left their first node


def test_thread_affinities_sees_this_process() -> None:
    assert thread_affinities(os.getpid()) == {frozenset(os.sched_getaffinity(0))}
