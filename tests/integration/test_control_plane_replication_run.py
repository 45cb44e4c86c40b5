"""The replicate state machine run for real by moto's interpreter.

Lambda tasks are dispatched in-process to the app's handlers (the local stack's
patch of moto), and the waitForTaskToken tasks complete only when the target edges
pull their work on heartbeat and report it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import boto3
from fsnode_core import placement
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.nodes_store import NodeRegistry

from tests.helpers import wait_for
from tests.integration.control_plane_helpers import CHUNK, upload
from tests.integration.lifecycle_fixtures import isolated_fixture, machines_fixture, pump  # noqa: F401


def _catalog(stack: Any) -> ChunkCatalog:
    return ChunkCatalog(stack.env["FSNODE_CHUNKS_TABLE"], boto3.client("dynamodb"))


def _upload_execution(machine: str, started: dict[str, Any]) -> str:
    """The execution upload completion started (first chunks of the new version)."""
    name = f"replicate-{started['file_id']}-{started['version']}"
    return machine.replace(":stateMachine:", ":execution:") + f":{name}"


def _ranked(stack: Any, file_id: str, node_ids: set[str]) -> list[str]:
    nodes = NodeRegistry(stack.env["FSNODE_NODES_TABLE"], boto3.client("dynamodb")).list_nodes()
    live = placement.eligible(nodes, time.time(), 600)
    return [n.node_id for n in placement.rank(file_id, live) if n.node_id in node_ids]


def test_replication_completes_through_pulled_work(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    edges = isolated(2)
    data = os.urandom(CHUNK + 3)
    started, _ = upload(cp_api, data)
    execution = _upload_execution(machines.replicate, started)
    status = machines.wait(execution, pump(edges))
    assert status["status"] == "SUCCEEDED", status
    assert json.loads(status["input"])["first_chunks"] == 4
    output = json.loads(status["output"])
    assert output["under_replicated"] == [] and output["replicated"] == 2
    view = _catalog(cp_stack).file_view(started["file_id"])
    assert sorted((r.index, r.node_id) for r in view.replicas) == sorted(
        (i, e.node_id) for i in (0, 1) for e in edges
    )
    # The copies were verified: each report carried the SHA-256 of the bytes it read.
    hashes = [hashlib.sha256(data[i : i + CHUNK]).hexdigest() for i in (0, CHUNK)]
    # One work item per edge for the batch (both chunks), one digest per chunk.
    assert [w["report"]["sha256"] for e in edges for w in e.done] == [hashes, hashes]
    assert [w["chunks"] for e in edges for w in e.done] == [[0, 1], [0, 1]]


def test_failed_warm_is_retried_then_moved_to_another_node(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    edges = isolated(3)
    started, _ = upload(cp_api, os.urandom(1000))
    file_id = started["file_id"]
    order = _ranked(cp_stack, file_id, {e.node_id for e in edges})
    by_id = {e.node_id: e for e in edges}
    failing = by_id[order[0]]  # placement's first choice fails every warm
    failing.fail_warm = True
    execution = _upload_execution(machines.replicate, started)
    status = machines.wait(execution, pump(edges))
    assert status["status"] == "SUCCEEDED", status
    assert json.loads(status["output"])["under_replicated"] == []
    holders = {r.node_id for r in _catalog(cp_stack).file_view(file_id).replicas}
    assert holders == {order[1], order[2]}
    # Same node first: one attempt and two retries, each a pulled work item of its own
    # (a new task and token), all before the batch moved to the third node. (The second
    # copy's slot, order[1], warms in parallel: it may come before, between or after.)
    assert len(failing.done) == 3 and len({w["work_id"] for w in failing.done}) == 3
    moved_to = by_id[order[2]].done
    assert moved_to and max(w["seq"] for w in failing.done) < min(w["seq"] for w in moved_to)
    # The batch runs as a child execution: the parent's history holds the map run only.
    assert not [e for e in machines.history(execution) if e["type"] == "TaskFailed"]


def test_under_replication_is_reported_in_the_output(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    edges = isolated(2)
    edges[1].fail_warm = True  # with two nodes there is nowhere to move to
    started, _ = upload(cp_api, os.urandom(CHUNK + 3))
    execution = _upload_execution(machines.replicate, started)
    status = machines.wait(execution, pump(edges))
    assert status["status"] == "SUCCEEDED", status
    output = json.loads(status["output"])
    assert output["under_replicated"] == [{"first": 0, "last": 1, "reason": "no_candidate_node"}]
    assert output["under_replicated_chunks"] == 2 and output["replicated"] == 0
    assert {r.node_id for r in _catalog(cp_stack).file_view(started["file_id"]).replicas} == {
        edges[0].node_id
    }


def test_sync_strategy_completes_the_upload_after_its_replicas(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any, monkeypatch: Any
) -> None:
    import threading

    from chalicelib import aws, edge_work, manifests, nodes

    edges = isolated(2)
    monkeypatch.setenv("FSNODE_REPLICATION_STRATEGY", "sync")
    aws.reset()
    stop = threading.Event()

    def answer_work() -> None:
        # The edges' side, straight through the route handlers: the test client serves
        # one request at a time and is busy with the blocked complete.
        while not stop.wait(0.2):
            for edge in edges:
                beat = nodes.heartbeat(
                    edge.node_id,
                    edge.auth,
                    {"used_bytes": 0, "free_bytes": 1, "capacity_bytes": 1, "load": 0.0},
                )
                for work in beat["work"]:
                    manifest = manifests.read_manifest(work["file_id"], work["version"])
                    edge_work.report(
                        edge.node_id,
                        work["work_id"],
                        edge.auth,
                        {"ok": True, "sha256": [manifest.chunk_hash(i) for i in work["chunks"]]},
                    )

    worker = threading.Thread(target=answer_work, daemon=True)
    worker.start()
    try:
        started, done = upload(cp_api, os.urandom(CHUNK + 3))
    finally:
        stop.set()
        worker.join(10)
    assert done.status_code == 200, done.body
    # Complete answered only once both chunks were on both edges.
    view = _catalog(cp_stack).file_view(started["file_id"])
    assert sorted((r.index, r.node_id) for r in view.replicas) == sorted(
        (i, e.node_id) for i in (0, 1) for e in edges
    )


def test_replication_factor_is_honored(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any, monkeypatch: Any
) -> None:
    from chalicelib import aws

    edges = isolated(4)
    monkeypatch.setenv("FSNODE_REPLICATION_FACTOR", "3")
    aws.reset()
    started, _ = upload(cp_api, os.urandom(CHUNK + 3))
    execution = _upload_execution(machines.replicate, started)
    status = machines.wait(execution, pump(edges))
    assert status["status"] == "SUCCEEDED", status
    assert json.loads(status["output"])["under_replicated"] == []
    replicas = _catalog(cp_stack).file_view(started["file_id"]).replicas
    # Three copies of each chunk, on placement's first three nodes; the fourth is spared.
    order = _ranked(cp_stack, started["file_id"], {e.node_id for e in edges})
    assert sorted((r.index, r.node_id) for r in replicas) == sorted(
        (i, n) for i in (0, 1) for n in order[:3]
    )


def test_async_strategy_completes_the_upload_before_its_replicas(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    edges = isolated(2)  # they pull no work until the upload has answered
    started, done = upload(cp_api, os.urandom(CHUNK + 3))
    assert done.status_code == 200, done.body
    execution = _upload_execution(machines.replicate, started)
    assert (
        boto3.client("stepfunctions").describe_execution(executionArn=execution)["status"]
        == "RUNNING"
    )
    assert _catalog(cp_stack).file_view(started["file_id"]).replicas == []
    status = machines.wait(execution, pump(edges))
    assert status["status"] == "SUCCEEDED", status
    assert len(_catalog(cp_stack).file_view(started["file_id"]).replicas) == 4


def test_a_copy_finished_after_the_tombstone_is_evicted(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    edges = isolated(2)
    data = os.urandom(100)
    started, _ = upload(cp_api, data)
    file_id, version = started["file_id"], started["version"]

    def pull(edge: Any) -> list[dict[str, Any]]:
        beat = cp_api.call(
            "POST",
            f"/nodes/{edge.node_id}/heartbeat",
            {"used_bytes": 0, "free_bytes": 1, "capacity_bytes": 1, "load": 0.0},
            key=False,
            headers=edge.auth,
        )
        assert beat.status_code == 200, beat.body
        return list(beat.json_body["work"])

    def queued() -> tuple[Any, list[dict[str, Any]]] | None:
        edge = next((e for e in edges if pull(e)), edges[0])
        work = pull(edge)
        return (edge, work) if work else None

    edge, work = wait_for(queued, "the upload's execution to queue a warm for its first target", 40)
    assert [w["kind"] for w in work] == ["warm"]
    # The edge is still fetching when the file is deleted (and collection lists no
    # replica of it on this edge).
    catalog = _catalog(cp_stack)
    meta = catalog.get_file(file_id)
    assert meta is not None
    now = int(time.time())
    catalog.tombstone(meta, seq=meta.seq + 1, due=now + 3600, now=now)
    report = cp_api.call(
        "POST",
        f"/nodes/{edge.node_id}/work/{work[0]['work_id']}",
        {"ok": True, "sha256": hashlib.sha256(data).hexdigest()},
        key=False,
        headers=edge.auth,
    )

    assert report.status_code == 200 and report.json_body["recorded"] is False
    assert _catalog(cp_stack).file_view(file_id).replicas == []
    evict = [w for w in pull(edge) if w["kind"] == "evict"]
    assert [(w["file_id"], w["version"], w["chunk_index"]) for w in evict] == [
        (file_id, version, -1)
    ]
    done = cp_api.call(
        "POST",
        f"/nodes/{edge.node_id}/work/{evict[0]['work_id']}",
        {"ok": True, "evicted_chunks": 1},
        key=False,
        headers=edge.auth,
    )
    assert done.status_code == 200 and done.json_body["recorded"] is True
    assert [w for w in pull(edge) if w["kind"] == "evict"] == []
