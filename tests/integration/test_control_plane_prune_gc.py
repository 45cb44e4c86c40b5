"""Prune and garbage collection with real executions (moto's interpreter, in-process
Lambdas) and simulated edges answering their pulled work through the real routes."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.errors import Conflict
from fsnode_core.models import NODE_DEAD, NODE_DRAINED, NODE_DRAINING, FileRecord, ReplicaRecord
from fsnode_core.nodes_store import NodeRegistry
from fsnode_core.published import version_manifest_key

from tests.integration.control_plane_helpers import CHUNK, upload
from tests.integration.lifecycle_fixtures import isolated_fixture, machines_fixture, pump  # noqa: F401
from tests.integration.published_reads import read_head


def _stores(stack: Any) -> tuple[ChunkCatalog, NodeRegistry]:
    ddb = boto3.client("dynamodb")
    return (
        ChunkCatalog(stack.env["FSNODE_CHUNKS_TABLE"], ddb),
        NodeRegistry(stack.env["FSNODE_NODES_TABLE"], ddb),
    )


def _hold(
    catalog: ChunkCatalog, file_id: str, version: str, chunks: int, node_ids: list[str]
) -> None:
    for index in range(chunks):
        for node_id in node_ids:
            catalog.put_replica(
                ReplicaRecord(
                    file_id=file_id,
                    version=version,
                    index=index,
                    node_id=node_id,
                    created_at=int(time.time()),
                )
            )


def _three_chunks_held(
    api: Any, machines: Any, catalog: ChunkCatalog, node_ids: list[str]
) -> tuple[str, str]:
    """A file of three chunks held by ``node_ids`` (its upload's replication stopped)."""
    started, _ = upload(api, os.urandom(2 * CHUNK + 5))
    file_id, version = started["file_id"], started["version"]
    for ex in machines.executions(machines.replicate):
        boto3.client("stepfunctions").stop_execution(executionArn=ex["executionArn"])
    _hold(catalog, file_id, version, 3, node_ids)
    return file_id, version


def _exists(bucket: str, key: str) -> bool:
    try:
        boto3.client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def _gc_arn(machine: str, file_id: str, version: str) -> str:
    return machine.replace(":stateMachine:", ":execution:") + f":gc-{file_id}-{version}"


def _stale(registry: NodeRegistry, node_id: str, seconds: int) -> None:
    """The node's last heartbeat ``seconds`` ago, as if it stopped beating then."""
    now = int(time.time()) - seconds
    registry.heartbeat(
        node_id,
        used_bytes=0,
        free_bytes=1,
        capacity_bytes=1,
        load=0.0,
        hot_files=[],
        now=now,
        expires_at=now + 10_000,
    )


def test_prune_declares_a_silent_node_dead_and_heals_its_chunks(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    from chalicelib import prune

    a, b, c = isolated(3)
    catalog, registry = _stores(cp_stack)
    file_id, _ = _three_chunks_held(cp_api, machines, catalog, [a.node_id, b.node_id])
    a.offline = True
    _stale(registry, a.node_id, 1000)

    # Two overlapping prune runs: one marks the node dead, neither duplicates work.
    summaries: list[dict[str, Any]] = []
    runs = [threading.Thread(target=lambda: summaries.append(prune.run())) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sum(s["marked_dead"].count(a.node_id) for s in summaries) == 1
    assert registry.get(a.node_id).status == NODE_DEAD
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
    catalog, registry = _stores(cp_stack)
    file_id, _ = _three_chunks_held(cp_api, machines, catalog, [a.node_id, b.node_id])
    assert cp_api.call("POST", f"/nodes/{a.node_id}/drain").status_code == 200
    a.beat()  # nothing in flight: the drain is done
    assert registry.get(a.node_id).status == NODE_DRAINED  # type: ignore[union-attr]
    # It beats no more: silent past the timeout, as prune will find it.
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


def _delete(api: Any, sfn_machines: Any, file_id: str, version: str) -> str:
    """DELETE the file; with no grace period (the test stack's) its collection starts."""
    answer = api.call("DELETE", f"/files/{file_id}")
    assert answer.status_code == 202, answer.body
    return _gc_arn(sfn_machines.gc, file_id, version)


def _meta(catalog: ChunkCatalog, file_id: str) -> FileRecord:
    meta = catalog.get_file(file_id)
    assert meta is not None
    return meta


def test_gc_deletes_object_items_and_has_edges_evict(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    edges = isolated(2)
    catalog, _ = _stores(cp_stack)
    started, done = upload(cp_api, os.urandom(CHUNK + 5))
    record = done.json_body
    file_id, version = started["file_id"], started["version"]
    share = cp_api.call("POST", f"/files/{file_id}/share", {"ttl_seconds": 60}).json_body
    _hold(catalog, file_id, version, 2, [e.node_id for e in edges])

    seen: dict[str, int] = {}

    def watch() -> None:
        meta = catalog.get_file(file_id)
        if meta is not None and meta.status == "deleting":
            head = read_head(record["bucket"], file_id)
            seen.setdefault("head", head.status if head is not None else "missing")
        pump(edges)()

    arn = _delete(cp_api, machines, file_id, version)
    status = machines.wait(arn, watch)
    assert status["status"] == "SUCCEEDED", status
    output = json.loads(status["output"])
    assert output["evicted"] == sorted(e.node_id for e in edges) and output["abandoned"] == []
    assert output["object_deleted"] is True
    assert not _exists(record["bucket"], record["key"])
    view = catalog.file_view(file_id)
    assert (view.meta, view.replicas) == (None, [])
    assert not _exists(record["bucket"], version_manifest_key(file_id, version))
    # Tombstoned first: edges were refused the file while GC ran.
    assert seen["head"] == "deleted"
    for edge in edges:
        evicts = [w for w in edge.done if w["kind"] == "evict"]
        assert [(w["file_id"], w["version"]) for w in evicts] == [(file_id, version)]
    path = share["share_url"].removeprefix("http://control.test")
    assert cp_api.call("GET", path, key=False).status_code in (404, 410)


def test_gc_waits_for_an_offline_edge_and_finishes_when_it_returns(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    edges = isolated(2)
    catalog, _ = _stores(cp_stack)
    started, _ = upload(cp_api, os.urandom(100))
    file_id, version = started["file_id"], started["version"]
    _hold(catalog, file_id, version, 1, [e.node_id for e in edges])
    away = edges[1]
    away.offline = True
    arn = _delete(cp_api, machines, file_id, version)
    back_at = time.monotonic() + 6  # three evict timeouts (2 s each) while offline

    def tick() -> None:
        if time.monotonic() >= back_at:
            away.offline = False
        pump(edges)()

    status = machines.wait(arn, tick)
    assert status["status"] == "SUCCEEDED", status
    output = json.loads(status["output"])
    assert output["evicted"] == sorted(e.node_id for e in edges) and output["abandoned"] == []
    entered = [
        e["stateEnteredEventDetails"]["name"]
        for e in machines.history(arn)
        if e["type"].endswith("StateEntered")
    ]
    assert "WaitForNode" in entered and "CheckNode" in entered
    # Each retry replaced the queued item: the returning edge left no evict work behind.
    assert [w for w in away.done if w["kind"] == "evict"]
    assert catalog.pending_work(away.node_id) == []
    assert catalog.file_view(file_id).meta is None


def test_prune_collects_expired_files(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    from chalicelib import prune

    edges = isolated(1)
    catalog, _ = _stores(cp_stack)
    started, done = upload(cp_api, os.urandom(100))
    file_id, version = started["file_id"], started["version"]
    _hold(catalog, file_id, version, 1, [edges[0].node_id])
    now = int(time.time())
    meta = catalog.set_expiry(_meta(catalog, file_id), now + 3600, seq=10**15, now=now)
    assert file_id not in prune.run(now)["expired"]  # not due yet
    catalog.set_expiry(meta, now - 5, seq=10**15 + 1, now=now)
    # Past its expiry: tombstoned, then (no grace here) collected.
    assert file_id in prune.run()["expired"]
    status = machines.wait(_gc_arn(machines.gc, file_id, version), pump(edges))
    assert status["status"] == "SUCCEEDED", status
    assert not _exists(done.json_body["bucket"], done.json_body["key"])
    assert catalog.file_view(file_id).meta is None
    assert file_id not in prune.run()["expired"]


def test_gc_of_an_imported_file_keeps_the_customers_object(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    isolated(1)
    catalog, _ = _stores(cp_stack)
    bucket = cp_stack.env["FSNODE_BUCKET"]
    key = f"customer/{os.urandom(4).hex()}/film.mp4"
    body = os.urandom(100)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    record = cp_api.call("POST", "/files/import", {"bucket": bucket, "key": key}).json_body
    file_id, version = record["file_id"], record["version"]
    status = machines.wait(_delete(cp_api, machines, file_id, version))
    assert status["status"] == "SUCCEEDED", status
    assert json.loads(status["output"])["object_deleted"] is False
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert catalog.file_view(file_id).meta is None
    # Our records of it go: the manifest and head too.
    assert not _exists(bucket, version_manifest_key(file_id, version))


@pytest.mark.parametrize(
    "event",
    [
        {
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "id": "1",
            "time": "2026-01-01T00:00:00Z",
            "region": "us-east-1",
            "account": "000000000000",
            "resources": [],
            "detail": {},
            "version": "0",
        }
    ],
)
def test_prune_handler_takes_an_eventbridge_event(
    cp_app: Any, cp_client: Any, event: dict[str, Any]
) -> None:
    from fsnode.localstack.lambda_dispatch import LambdaContext

    summary = cp_app.prune(event, LambdaContext("prune", 512, 60))
    assert set(summary) == {
        "marked_dead",
        "lost_replicas",
        "hot_replications",
        "expired",
        "collections",
        "uploads_discarded",
        "published",
    }


@pytest.mark.parametrize("leaving", [NODE_DEAD, NODE_DRAINING])
def test_gc_does_not_wait_for_a_dead_or_draining_node(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any, leaving: str
) -> None:
    """Neither pulls work (a draining node finishes its streams, takes no work)."""
    live, dead = isolated(2)
    catalog, registry = _stores(cp_stack)
    started, _ = upload(cp_api, os.urandom(100))
    file_id, version = started["file_id"], started["version"]
    _hold(catalog, file_id, version, 1, [live.node_id, dead.node_id])
    dead.offline = True
    if leaving == NODE_DEAD:
        assert registry.mark_dead(dead.node_id, registry.get(dead.node_id).last_heartbeat)
    else:
        assert cp_api.call("POST", f"/nodes/{dead.node_id}/drain").status_code == 200
    status = machines.wait(_delete(cp_api, machines, file_id, version), pump([live]), timeout=15)
    assert status["status"] == "SUCCEEDED", status
    assert json.loads(status["output"])["evicted"] == [live.node_id]
    assert catalog.file_view(file_id).replicas == []
    assert catalog.pending_work(dead.node_id) == []


def test_files_to_collect_reads_only_the_sparse_collection_index(
    cp_api: Any, cp_stack: Any
) -> None:
    catalog, _ = _stores(cp_stack)
    now = int(time.time())
    due, later, deleting, plain = (upload(cp_api, os.urandom(100))[0] for _ in range(4))
    catalog.set_expiry(_meta(catalog, due["file_id"]), now - 1, seq=10**15, now=now)
    catalog.set_expiry(_meta(catalog, later["file_id"]), now + 3600, seq=10**15, now=now)
    catalog.tombstone(_meta(catalog, deleting["file_id"]), seq=10**15, due=now, now=now)

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
    assert catalog.get_file(due["file_id"]).expires_at == now - 1
    # Only the current, ready version as read takes an expiry.
    tombstone = _meta(catalog, deleting["file_id"])
    with pytest.raises(Conflict):
        catalog.set_expiry(tombstone, now, seq=tombstone.seq + 1, now=now)
    stale = _meta(catalog, plain["file_id"])
    catalog.set_expiry(stale, None, seq=stale.seq + 1, now=now)
    with pytest.raises(Conflict):
        catalog.set_expiry(stale, now, seq=stale.seq + 2, now=now)


def test_prune_leaves_hot_files_to_their_running_upload_replication(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    from chalicelib import prune

    edges = isolated(2)
    _, registry = _stores(cp_stack)
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
    cp_api: Any, cp_stack: Any, isolated: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import prune

    catalog, registry = _stores(cp_stack)
    (edge,) = isolated(1)
    files = [upload(cp_api, os.urandom(100))[0] for _ in range(5)]
    for started in files:  # one block (of one chunk) per file
        _hold(catalog, started["file_id"], started["version"], 1, [edge.node_id])
    _stale(registry, edge.node_id, 1000)
    monkeypatch.setattr(prune, "MAX_RECOVERY_BLOCKS_PER_RUN", 2)
    healed = []
    while catalog.replicas_on_node(edge.node_id):
        healed.append(prune.run()["lost_replicas"].get(edge.node_id, 0))
        assert len(healed) <= 10, healed
    # Never more than two blocks a run; all five over the runs.
    assert max(healed) <= 2 and sum(healed) == 5 and len(healed) >= 3
