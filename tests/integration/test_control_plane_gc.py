"""Garbage collection of a deleted file with real executions (moto's interpreter,
in-process Lambdas) and simulated edges answering their pulled work through the real
routes: the object, items and edge copies go; offline edges are waited for, dead ones
not; an imported file's object is the customer's and stays."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import boto3
import pytest
from fsnode_core.models import NODE_DEAD, NODE_DRAINING
from fsnode_core.published_keys import version_manifest_key

from tests.integration.control_plane_helpers import CHUNK, upload
from tests.integration.lifecycle_fixtures import (
    delete_for_gc,
    hold_replicas,
    isolated_fixture,  # noqa: F401
    machines_fixture,  # noqa: F401
    node_record,
    object_exists,
    pump,
    stores,
)
from tests.integration.published_reads import read_head


def test_gc_deletes_object_items_and_has_edges_evict(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    edges = isolated(2)
    catalog, _ = stores(cp_stack)
    started, done = upload(cp_api, os.urandom(CHUNK + 5))
    record = done.json_body
    file_id, version = started["file_id"], started["version"]
    share = cp_api.call("POST", f"/files/{file_id}/share", {"ttl_seconds": 60}).json_body
    hold_replicas(catalog, file_id, version, 2, [e.node_id for e in edges])

    seen: dict[str, str] = {}

    def watch() -> None:
        meta = catalog.get_file(file_id)
        if meta is not None and meta.status == "deleting":
            head = read_head(record["bucket"], file_id)
            seen.setdefault("head", head.status if head is not None else "missing")
        pump(edges)()

    arn = delete_for_gc(cp_api, machines, file_id, version)
    status = machines.wait(arn, watch)
    assert status["status"] == "SUCCEEDED", status
    output = json.loads(status["output"])
    assert output["evicted"] == sorted(e.node_id for e in edges) and output["abandoned"] == []
    assert output["object_deleted"] is True
    assert not object_exists(record["bucket"], record["key"])
    view = catalog.file_view(file_id)
    assert (view.meta, view.replicas) == (None, [])
    assert not object_exists(record["bucket"], version_manifest_key(file_id, version))
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
    catalog, _ = stores(cp_stack)
    started, _ = upload(cp_api, os.urandom(100))
    file_id, version = started["file_id"], started["version"]
    hold_replicas(catalog, file_id, version, 1, [e.node_id for e in edges])
    away = edges[1]
    away.offline = True
    arn = delete_for_gc(cp_api, machines, file_id, version)
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


def test_gc_of_an_imported_file_keeps_the_customers_object(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any
) -> None:
    isolated(1)
    catalog, _ = stores(cp_stack)
    bucket = cp_stack.env["FSNODE_BUCKET"]
    key = f"customer/{os.urandom(4).hex()}/film.mp4"
    body = os.urandom(100)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    record = cp_api.call("POST", "/files/import", {"bucket": bucket, "key": key}).json_body
    file_id, version = record["file_id"], record["version"]
    status = machines.wait(delete_for_gc(cp_api, machines, file_id, version))
    assert status["status"] == "SUCCEEDED", status
    assert json.loads(status["output"])["object_deleted"] is False
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert catalog.file_view(file_id).meta is None
    # Our records of it go: the manifest and head too.
    assert not object_exists(bucket, version_manifest_key(file_id, version))


@pytest.mark.parametrize("leaving", [NODE_DEAD, NODE_DRAINING])
def test_gc_does_not_wait_for_a_dead_or_draining_node(
    cp_api: Any, cp_stack: Any, machines: Any, isolated: Any, leaving: str
) -> None:
    """Neither pulls work (a draining node finishes its streams, takes no work)."""
    live, dead = isolated(2)
    catalog, registry = stores(cp_stack)
    started, _ = upload(cp_api, os.urandom(100))
    file_id, version = started["file_id"], started["version"]
    hold_replicas(catalog, file_id, version, 1, [live.node_id, dead.node_id])
    dead.offline = True
    if leaving == NODE_DEAD:
        assert registry.mark_dead(dead.node_id, node_record(registry, dead.node_id).last_heartbeat)
    else:
        assert cp_api.call("POST", f"/nodes/{dead.node_id}/drain").status_code == 200
    status = machines.wait(
        delete_for_gc(cp_api, machines, file_id, version), pump([live]), timeout=15
    )
    assert status["status"] == "SUCCEEDED", status
    assert json.loads(status["output"])["evicted"] == [live.node_id]
    assert catalog.file_view(file_id).replicas == []
    assert catalog.pending_work(dead.node_id) == []
