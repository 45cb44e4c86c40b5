"""Replication, healing and collection of a 50,000-chunk file inside AWS's limits.

The limits count chunks, not bytes: 1 KiB chunks make the file 49 MiB. Step Functions'
limits are on in this process's moto server (``states_limits``: 256 KiB of state,
input and task output; 25,000 history events) and Lambda's 6 MB payloads are enforced
by the in-process dispatch, so a state, history or answer that grew with the chunk count
would fail here as it would in AWS.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.nodes_store import NodeRegistry
from fsnode_core.replica_blocks import BLOCK_CHUNKS

from fsnode.localstack import aws_limits, states_limits
from tests.helpers import put_parts
from tests.integration.control_plane_helpers import (
    chunk_catalog,
    chunk_hashes,
    file_items,
    part_hashes,
    stale_node,
    unique_path,
)
from tests.integration.lifecycle_fixtures import isolated_fixture, machines_fixture, pump  # noqa: F401
from tests.integration.test_control_plane_uploads_large import SMALL_CHUNK

CHUNKS = 50_000
WAIT = 600  # seconds an execution may take on a loaded machine (a bound, not a measure)


@pytest.fixture()
def limits_on() -> Iterator[None]:
    """Step Functions' payload and history limits in this process's moto server."""
    states_limits.install()
    yield
    states_limits.uninstall()


def _upload(api: Any, data: bytes, chunk: int) -> dict[str, Any]:
    body = {
        "path": unique_path("large.bin"),
        "size": len(data),
        "content_type": "application/octet-stream",
        "chunk_sha256": chunk_hashes(data, chunk),
        "part_sha256": part_hashes(data, chunk=chunk),
    }
    init = api.call("POST", "/files", json.dumps(body).encode())
    assert init.status_code == 200, init.body[:300]
    started: dict[str, Any] = init.json_body
    done = api.call(
        "POST",
        f"/files/{started['file_id']}/complete",
        {"parts": put_parts(started["parts"], data)},
    )
    assert done.status_code == 200, done.body[:300]
    return started


def _execution(machine: str, name: str) -> str:
    return machine.replace(":stateMachine:", ":execution:") + f":{name}"


def _holders(catalog: ChunkCatalog, file_id: str) -> dict[str, int]:
    """Chunks held per node (every chunk counted once per holder)."""
    counts: dict[str, int] = {}
    for block in catalog.file_view(file_id).replica_blocks:
        counts[block.node_id] = counts.get(block.node_id, 0) + len(block.chunks)
    return counts


def _assert_small(machines: Any, arn: str, status: dict[str, Any]) -> None:
    """The parent's history and output do not grow with the chunk count."""
    assert len(machines.history(arn)) < 100
    assert len(status.get("output") or "") < 64 * 1024


@pytest.mark.timeout(1200)
def test_50000_chunks_replicate_heal_and_collect_within_aws_limits(
    cp_api: Any,
    cp_stack: Any,
    machines: Any,
    isolated: Any,
    limits_on: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chalicelib import aws, prune, replication

    catalog = chunk_catalog(cp_stack)
    registry = NodeRegistry(cp_stack.env["FSNODE_NODES_TABLE"], boto3.client("dynamodb"))
    a, b = isolated(2)
    # 1 KiB chunks; upload completion replicates every chunk (not only the first few).
    # The simulated edges answer a heartbeat's work one item after another on a shared
    # machine: a warm may wait its turn longer than the 5 s the other tests allow.
    values = {
        "FSNODE_CHUNK_SIZE": str(SMALL_CHUNK),
        "FSNODE_WARM_TIMEOUT": str(WAIT),
        "FSNODE_REPLICATION_FIRST_CHUNKS": str(CHUNKS),
    }
    machines.configure(**values)  # the functions' environment (the in-process dispatch
    for name, value in values.items():  # sets it), and this process's
        monkeypatch.setenv(name, value)
    aws.reset()
    data = os.urandom(CHUNKS * SMALL_CHUNK)
    started = _upload(cp_api, data, SMALL_CHUNK)
    file_id, version = started["file_id"], started["version"]

    # 1. Replication after the upload: every chunk on both edges.
    upload_arn = _execution(machines.replicate, f"replicate-{file_id}-{version}")
    status = machines.wait(upload_arn, pump([a, b]), timeout=WAIT)
    assert status["status"] == "SUCCEEDED", status
    output = json.loads(status["output"])
    batches = -(-CHUNKS // replication.MAX_BATCH_CHUNKS)
    assert (output["batches"], output["chunks"], output["replicated"]) == (batches, CHUNKS, CHUNKS)
    assert output["under_replicated_chunks"] == 0 and output["under_replicated"] == []
    _assert_small(machines, upload_arn, status)
    # One work item per batch per edge, each verified chunk by chunk.
    assert sorted(len(w["chunks"]) for w in a.done) == sorted(
        min(replication.MAX_BATCH_CHUNKS, CHUNKS - i)
        for i in range(0, CHUNKS, replication.MAX_BATCH_CHUNKS)
    )
    assert _holders(catalog, file_id) == {a.node_id: CHUNKS, b.node_id: CHUNKS}
    # Replica facts: one item per block of 4,096 chunks per node, far under 400 KB.
    replicas = file_items(cp_stack, file_id, f"replica#{version}#")
    assert len(replicas) == 2 * -(-CHUNKS // BLOCK_CHUNKS)
    assert max(len(json.dumps(item)) for item in replicas) < aws_limits.DYNAMODB_ITEM_BYTES / 10

    # 2. Healing: a dies with only b left, so the loss is reported under-replicated...
    a.offline = True
    stale_node(registry, a.node_id, 1000)
    swept = prune.run()
    assert a.node_id in swept["marked_dead"]  # (nodes other tests left silent go too)
    assert swept["lost_replicas"] == {a.node_id: CHUNKS}
    assert catalog.replicas_on_node(a.node_id) == []
    loss = [
        e
        for e in machines.executions(machines.replicate)
        if e["name"].startswith("replicate-loss-")
    ]
    assert len(loss) == 1
    status = machines.wait(loss[0]["executionArn"], pump([b]), timeout=WAIT)
    assert status["status"] == "SUCCEEDED", status
    assert json.loads(status["input"])["ranges"] == [[0, CHUNKS - 1]]
    output = json.loads(status["output"])
    assert output["under_replicated_chunks"] == CHUNKS and output["replicated"] == 0
    # ... as runs: one per batch here, far fewer than the chunks.
    assert len(output["under_replicated"]) == batches
    assert {u["reason"] for u in output["under_replicated"]} == {"no_candidate_node"}
    assert sum(u["last"] - u["first"] + 1 for u in output["under_replicated"]) == CHUNKS
    _assert_small(machines, loss[0]["executionArn"], status)

    # ... and healed once c joins and reports the file hot.
    (c,) = isolated(1)
    c.hot_files = [file_id]
    c.beat()
    hot = prune.run()["hot_replications"]
    assert hot == [file_id]
    hot_runs = [
        e for e in machines.executions(machines.replicate) if e["name"].startswith("replicate-hot-")
    ]
    status = machines.wait(hot_runs[0]["executionArn"], pump([b, c]), timeout=WAIT)
    assert status["status"] == "SUCCEEDED", status
    output = json.loads(status["output"])
    assert output["replicated"] == CHUNKS and output["under_replicated_chunks"] == 0
    assert _holders(catalog, file_id) == {b.node_id: CHUNKS, c.node_id: CHUNKS}

    # 3. Collection after delete: one evict per holder, the replica items in batches.
    deleted = cp_api.call("DELETE", f"/files/{file_id}")
    assert deleted.status_code == 202, deleted.body
    gc_arn = _execution(machines.gc, f"gc-{file_id}-{version}")
    status = machines.wait(gc_arn, pump([b, c]), timeout=WAIT)
    assert status["status"] == "SUCCEEDED", status
    output = json.loads(status["output"])
    assert output["evicted"] == sorted([b.node_id, c.node_id])
    # One evict of the whole version per holder (never one per chunk); a loaded machine
    # may see it once more, when its report came after the wait timed out and GC retried.
    evicts = [w["chunk_index"] for w in c.done if w["kind"] == "evict"]
    assert evicts and set(evicts) == {-1} and len(evicts) < 10, evicts
    assert file_items(cp_stack, file_id, "meta") == []
    assert file_items(cp_stack, file_id, "replica#") == []


def test_one_state_entry_per_chunk_is_refused_at_50000_chunks(cp_env: Any, limits_on: None) -> None:
    """The shape replication had before batches: a plan listing every chunk is over
    Step Functions' 256 KiB of state, and the local stack fails it as AWS does."""
    sfn = boto3.client("stepfunctions")
    per_chunk = [{"chunk_index": i, "node_id": "", "tried": []} for i in range(CHUNKS)]
    assert len(json.dumps(per_chunk)) > aws_limits.STATES_PAYLOAD_BYTES
    definition = {
        "StartAt": "Plan",
        "States": {
            "Plan": {"Type": "Pass", "Result": {"chunks": list(range(CHUNKS))}, "End": True}
        },
    }
    _enable_execution(cp_env.endpoint, True)  # moto's interpreter keeps its own machines
    try:
        arn = sfn.create_state_machine(
            name=f"fsnode-per-chunk-{os.urandom(4).hex()}",
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/fsnode-sfn",
        )["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
        deadline = time.monotonic() + WAIT
        described = sfn.describe_execution(executionArn=execution)
        while described["status"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
            described = sfn.describe_execution(executionArn=execution)
        assert described["status"] == "FAILED"
        assert described["error"] == "States.DataLimitExceeded"
        # Its input could not have carried the chunks either.
        with pytest.raises(ClientError, match="ValidationException"):
            sfn.start_execution(stateMachineArn=arn, input=json.dumps({"chunks": per_chunk}))
    finally:
        _enable_execution(cp_env.endpoint, False)


def _enable_execution(endpoint: str, on: bool) -> None:
    import requests

    requests.post(
        f"{endpoint}/moto-api/config",
        json={"stepfunctions": {"execute_state_machine": on}},
        timeout=10,
    ).raise_for_status()
