"""Prune with real executions (moto's interpreter, in-process Lambdas) and simulated
edges answering their pulled work through the real routes: dead nodes healed, hot
files replicated, expired files collected."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import boto3
import pytest
from fsnode_core.errors import Conflict
from fsnode_core.models import NODE_DEAD, NODE_DRAINED

from tests.integration.control_plane_helpers import CHUNK, scheduled_prune, stale_node, upload
from tests.integration.lifecycle_fixtures import (
    file_record,
    gc_arn,
    hold_replicas,
    isolated_fixture,  # noqa: F401
    machines_fixture,  # noqa: F401
    node_record,
    object_exists,
    pump,
    stores,
)


def three_chunks_held(api: Any, machines: Any, catalog: Any, node_ids: list[str]) -> str:
    """A new file of three chunks, held by ``node_ids`` (its upload's replication
    stopped); its id."""
    started, _ = upload(api, os.urandom(2 * CHUNK + 5))
    file_id, version = str(started["file_id"]), str(started["version"])
    for ex in machines.executions(machines.replicate):
        boto3.client("stepfunctions").stop_execution(executionArn=ex["executionArn"])
    hold_replicas(catalog, file_id, version, 3, node_ids)
    return file_id


def test_prune_declares_a_silent_node_dead_and_heals_its_chunks(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    from chalicelib import prune

    a, b, c = isolated(3)
    catalog, registry = stores(cp_stack)
    file_id = three_chunks_held(cp_api, machines, catalog, [a.node_id, b.node_id])
    a.offline = True
    stale_node(registry, a.node_id, 1000)

    # Two overlapping prune runs: one marks the node dead, neither duplicates work.
    summaries: list[dict[str, Any]] = []
    runs = [threading.Thread(target=lambda: summaries.append(prune.run())) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sum(s["marked_dead"].count(a.node_id) for s in summaries) == 1
    assert node_record(registry, a.node_id).status == NODE_DEAD
    prune.run()  # a third run later: still nothing new
    loss = [
        e
        for e in machines.executions(machines.replicate)
        if e["name"].startswith("replicate-loss-")
    ]
    assert len(loss) == 1
    assert catalog.replicas_on_node(a.node_id) == []

    status = machines.wait(loss[0]["executionArn"], pump([b, c]))
    assert status["status"] == "SUCCEEDED", status
    assert json.loads(status["input"])["ranges"] == [[0, 2]]  # the dead node's chunks, as runs
    assert json.loads(status["output"])["under_replicated"] == []
    view = catalog.file_view(file_id)
    assert sorted((r.index, r.node_id) for r in view.replicas) == sorted(
        (i, n) for i in range(3) for n in (b.node_id, c.node_id)
    )
    # c verified each chunk's bytes from the origin; the control plane checked the hashes.
    assert [w["chunks"] for w in c.done if w["kind"] == "warm"] == [[0, 1, 2]]
    # A dead node cannot heartbeat its way back: it must register again.
    a.offline = False
    beat = cp_api.call(
        "POST",
        f"/nodes/{a.node_id}/heartbeat",
        {"used_bytes": 0, "free_bytes": 1, "capacity_bytes": 1, "load": 0.0},
        key=False,
        headers=a.auth,
    )
    assert beat.status_code == 410
    assert json.loads(beat.body)["error"]["details"]["reason"] == "node_dead"


def test_prune_heals_a_drained_nodes_chunks_and_keeps_it_drained(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    from chalicelib import prune

    a, b, c = isolated(3)
    catalog, registry = stores(cp_stack)
    file_id = three_chunks_held(cp_api, machines, catalog, [a.node_id, b.node_id])
    assert cp_api.call("POST", f"/nodes/{a.node_id}/drain").status_code == 200
    a.beat()  # nothing in flight: the drain is done
    assert registry.get(a.node_id).status == NODE_DRAINED  # type: ignore[union-attr]
    # It beats no more: silent past the timeout, as prune will find it (the registry
    # refuses a retired node's heartbeat, so the item is aged directly).
    boto3.client("dynamodb").update_item(
        TableName=cp_stack.env["FSNODE_NODES_TABLE"],
        Key={"node_id": {"S": a.node_id}},
        UpdateExpression="SET last_heartbeat = :old",
        ExpressionAttributeValues={":old": {"N": str(int(time.time()) - 1000)}},
    )
    summary = prune.run()
    assert a.node_id not in summary["marked_dead"]
    assert registry.get(a.node_id).status == NODE_DRAINED  # type: ignore[union-attr]
    assert catalog.replicas_on_node(a.node_id) == []
    loss = [
        e
        for e in machines.executions(machines.replicate)
        if e["name"].startswith("replicate-loss-")
        and json.loads(
            boto3.client("stepfunctions").describe_execution(executionArn=e["executionArn"])[
                "input"
            ]
        )["file_id"]
        == file_id
    ]
    assert len(loss) == 1
    status = machines.wait(loss[0]["executionArn"], pump([b, c]))
    assert status["status"] == "SUCCEEDED", status
    view = catalog.file_view(file_id)
    assert sorted((r.index, r.node_id) for r in view.replicas) == sorted(
        (i, n) for i in range(3) for n in (b.node_id, c.node_id)
    )


def test_hot_files_start_one_replication_per_window(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    from chalicelib import prune

    edges = isolated(2)
    started, _ = upload(cp_api, os.urandom(100))
    for ex in machines.executions(machines.replicate):
        boto3.client("stepfunctions").stop_execution(executionArn=ex["executionArn"])
    for edge in edges:
        edge.hot_files = [started["file_id"]]
        edge.beat()
    now = time.time()
    assert started["file_id"] in prune.run(now)["hot_replications"]
    assert prune.run(now)["hot_replications"] == [started["file_id"]]  # same name: deduped
    hot = [
        e for e in machines.executions(machines.replicate) if e["name"].startswith("replicate-hot-")
    ]
    assert len(hot) == 1
    status = machines.wait(hot[0]["executionArn"], pump(edges))
    assert status["status"] == "SUCCEEDED", status
    # Now on two live nodes: the next window finds nothing to do.
    assert prune.run(now + 3600)["hot_replications"] == []


def test_prune_collects_expired_files(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    from chalicelib import prune

    edges = isolated(1)
    catalog, _ = stores(cp_stack)
    started, done = upload(cp_api, os.urandom(100))
    file_id, version = started["file_id"], started["version"]
    hold_replicas(catalog, file_id, version, 1, [edges[0].node_id])
    now = int(time.time())
    meta = catalog.set_expiry(file_record(catalog, file_id), now + 3600, seq=10**15, now=now)
    assert file_id not in prune.run(now)["expired"]  # not due yet
    catalog.set_expiry(meta, now - 5, seq=10**15 + 1, now=now)
    # Past its expiry: tombstoned, then (no grace here) collected.
    assert file_id in prune.run()["expired"]
    status = machines.wait(gc_arn(machines.gc, file_id, version), pump(edges))
    assert status["status"] == "SUCCEEDED", status
    assert not object_exists(done.json_body["bucket"], done.json_body["key"])
    assert catalog.file_view(file_id).meta is None
    assert file_id not in prune.run()["expired"]


def test_prune_handler_takes_an_eventbridge_event(cp_app: Any, cp_client: Any) -> None:
    summary = scheduled_prune(cp_app)
    assert set(summary) == {
        "marked_dead",
        "lost_replicas",
        "hot_replications",
        "expired",
        "collections",
        "uploads_discarded",
        "published",
    }


def test_files_to_collect_reads_only_the_sparse_collection_index(
    cp_api: Any, cp_stack: Any
) -> None:
    catalog, _ = stores(cp_stack)
    now = int(time.time())
    due, later, deleting, plain = (upload(cp_api, os.urandom(100))[0] for _ in range(4))
    catalog.set_expiry(file_record(catalog, due["file_id"]), now - 1, seq=10**15, now=now)
    catalog.set_expiry(file_record(catalog, later["file_id"]), now + 3600, seq=10**15, now=now)
    catalog.tombstone(file_record(catalog, deleting["file_id"]), seq=10**15, due=now, now=now)

    found = {meta.file_id: meta for meta in catalog.files_to_collect(now)}

    assert due["file_id"] in found and found[due["file_id"]].expires_at == now - 1
    assert found[deleting["file_id"]].status == "deleting"
    assert later["file_id"] not in found and plain["file_id"] not in found
    # The expiry is not the table's TTL attribute: DynamoDB must not drop meta by itself.
    item = boto3.client("dynamodb").get_item(
        TableName=cp_stack.env["FSNODE_CHUNKS_TABLE"],
        Key={"pk": {"S": f"file#{due['file_id']}"}, "sk": {"S": "meta"}},
    )["Item"]
    assert "expires_at" not in item
    assert file_record(catalog, due["file_id"]).expires_at == now - 1
    # Only the current, ready version as read takes an expiry.
    tombstone = file_record(catalog, deleting["file_id"])
    with pytest.raises(Conflict):
        catalog.set_expiry(tombstone, now, seq=tombstone.seq + 1, now=now)
    stale = file_record(catalog, plain["file_id"])
    catalog.set_expiry(stale, None, seq=stale.seq + 1, now=now)
    with pytest.raises(Conflict):
        catalog.set_expiry(stale, now, seq=stale.seq + 2, now=now)


def test_prune_leaves_hot_files_to_their_running_upload_replication(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    from chalicelib import prune

    edges = isolated(2)
    _, registry = stores(cp_stack)
    started, _ = upload(cp_api, os.urandom(100))  # its replication waits on the edges
    now = time.time()
    for edge in edges:
        # Reported hot, without pulling work: the upload's warms stay queued.
        registry.heartbeat(
            edge.node_id,
            used_bytes=0,
            free_bytes=1,
            capacity_bytes=1,
            load=0.0,
            hot_files=[started["file_id"]],
            now=int(now),
            expires_at=int(now) + 10_000,
        )
    sfn = boto3.client("stepfunctions")
    name = f"replicate-{started['file_id']}-{started['version']}"
    upload_arn = machines.replicate.replace(":stateMachine:", ":execution:") + f":{name}"
    assert sfn.describe_execution(executionArn=upload_arn)["status"] == "RUNNING"

    assert prune.run(now)["hot_replications"] == []

    status = machines.wait(upload_arn, pump(edges))
    assert status["status"] == "SUCCEEDED", status


def test_prune_heals_a_bounded_number_of_replica_blocks_per_run(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(``machines``: the healing runs must start; without the state machines, which
    another module's fixture may have deleted in this process, no block is ever healed.)"""
    from chalicelib import prune

    catalog, registry = stores(cp_stack)
    (edge,) = isolated(1)
    files = [upload(cp_api, os.urandom(100))[0] for _ in range(5)]
    for started in files:  # one block (of one chunk) per file
        hold_replicas(catalog, started["file_id"], started["version"], 1, [edge.node_id])
    stale_node(registry, edge.node_id, 1000)
    monkeypatch.setattr(prune, "MAX_RECOVERY_BLOCKS_PER_RUN", 2)
    healed = []
    while catalog.replicas_on_node(edge.node_id):
        healed.append(prune.run()["lost_replicas"].get(edge.node_id, 0))
        assert len(healed) <= 10, healed
    # Never more than two blocks a run; all five over the runs.
    assert max(healed) <= 2 and sum(healed) == 5 and len(healed) >= 3
