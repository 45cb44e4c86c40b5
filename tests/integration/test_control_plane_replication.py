"""Replication: execution start on complete, plan/warm handlers, work pulled and reported."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from fsnode_core.errors import InvalidInput

from tests.integration.control_plane_helpers import (
    CHUNK,
    chunk_catalog,
    error_of,
    node_auth,
    register,
    upload,
)

ASL = Path(__file__).resolve().parents[2] / "functions" / "statemachines" / "replicate.asl.json"


def _asl_with_arns() -> str:
    text = ASL.read_text()
    for placeholder in set(re.findall(r"\$\{(\w+)FunctionArn\}", text)):
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", placeholder).lower()
        text = text.replace(
            "${" + placeholder + "FunctionArn}",
            f"arn:aws:lambda:us-east-1:123456789012:function:fsnode-{name}",
        )
    return text


def test_asl_placeholders_name_the_apps_lambda_functions(cp_app: Any) -> None:
    definition = json.loads(ASL.read_text())
    placeholders = set(re.findall(r"\$\{(\w+)FunctionArn\}", ASL.read_text()))
    names = {re.sub(r"(?<!^)(?=[A-Z])", "_", p).lower() for p in placeholders}
    assert names == {"plan_replication", "pick_replica_target", "warm_chunk", "report_replication"}
    for name in names:
        assert callable(getattr(cp_app, name))
    batches = definition["States"]["ReplicateBatches"]
    # Each batch is a child execution: the parent's history does not grow per chunk.
    assert batches["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    warm = batches["ItemProcessor"]["States"]["WarmBatch"]
    assert warm["Resource"].endswith("waitForTaskToken") and warm["Retry"] and warm["Catch"]
    # A caught failure goes back to target picking, which moves the batch to another node.
    assert warm["Catch"][0]["Next"] == "PickTarget"
    assert batches["MaxConcurrency"] > 0


def test_complete_starts_one_replication_per_version(
    cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import aws

    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="fsnode-test-replicate",
        definition=_asl_with_arns(),
        roleArn="arn:aws:iam::123456789012:role/fsnode-sfn",
    )["stateMachineArn"]
    monkeypatch.setenv("FSNODE_REPLICATE_STATE_MACHINE_ARN", arn)
    aws.reset()
    try:
        started, done = upload(cp_api, os.urandom(CHUNK + 5))
        assert done.status_code == 200, done.body
        executions = sfn.list_executions(stateMachineArn=arn)["executions"]
        name = f"replicate-{started['file_id']}-{started['version']}"
        match = [e for e in executions if e["name"] == name]
        assert len(match) == 1
        described = sfn.describe_execution(executionArn=match[0]["executionArn"])
        # Upload completion replicates the first chunks (FSNODE_REPLICATION_FIRST_CHUNKS).
        assert json.loads(described["input"]) == {
            "file_id": started["file_id"],
            "version": started["version"],
            "first_chunks": 4,
        }
    finally:
        monkeypatch.delenv("FSNODE_REPLICATE_STATE_MACHINE_ARN")
        aws.reset()


def test_plan_warm_heartbeat_report(cp_api: Any, cp_client: Any, cp_stack: Any) -> None:
    data = os.urandom(2 * CHUNK + 7)
    started, _ = upload(cp_api, data)
    file_id, version = started["file_id"], started["version"]
    node = register(cp_api, cp_stack)
    register(cp_api, cp_stack)  # at least two live nodes, whatever ran before
    auth = {"authorization": f"Bearer {node['credential']}"}

    plan = cp_client.lambda_.invoke(
        "plan_replication", {"file_id": file_id, "version": version}
    ).payload
    assert len(plan["targets"]) == 2 and not plan["under_replicated"]
    assert plan["batches"] == [{"first": 0, "last": 2}] and plan["chunks"] == 3
    first = cp_client.lambda_.invoke(
        "plan_replication", {"file_id": file_id, "version": version, "first_chunks": 2}
    ).payload
    assert first["batches"] == [{"first": 0, "last": 1}]
    ranged = cp_client.lambda_.invoke(
        "plan_replication", {"file_id": file_id, "version": version, "ranges": [[2, 9], [1, 1]]}
    ).payload
    assert ranged["batches"] == [{"first": 1, "last": 2}]  # merged, clipped to the file
    batch = {"file_id": file_id, "version": version, "batch": {"first": 1, "last": 1}}
    picked = cp_client.lambda_.invoke("pick_replica_target", batch).payload
    assert picked["done"] is False and picked["node_id"] == plan["targets"][0]
    assert picked["chunks"] == [1]

    queued = cp_client.lambda_.invoke(
        "warm_chunk",
        {
            "file_id": file_id,
            "version": version,
            "chunks": [1],
            "node_id": node["node_id"],
            "task_token": "token-1",
        },
    ).payload
    beat = cp_api.call(
        "POST",
        f"/nodes/{node['node_id']}/heartbeat",
        {"used_bytes": 0, "free_bytes": 9, "capacity_bytes": 9, "load": 0.1},
        key=False,
        headers=auth,
    ).json_body
    assert beat["work"] == [
        {
            "work_id": queued["work_id"],
            "kind": "warm",
            "file_id": file_id,
            "version": version,
            "chunk_index": 1,
            "chunks": [1],
        }
    ]

    digest = hashlib.sha256(data[CHUNK : 2 * CHUNK]).hexdigest()
    path = f"/nodes/{node['node_id']}/work/{queued['work_id']}"
    answer = cp_api.call("POST", path, {"ok": True, "sha256": [digest]}, key=False, headers=auth)
    assert answer.status_code == 200, answer.body
    assert answer.json_body["recorded"] is True and answer.json_body["chunks_recorded"] == 1
    view = chunk_catalog(cp_stack).file_view(file_id)
    assert [(r.index, r.node_id) for r in view.replicas] == [(1, node["node_id"])]
    # The work is consumed: a repeated report finds nothing, and the next heartbeat is empty.
    again = cp_api.call("POST", path, {"ok": True, "sha256": [digest]}, key=False, headers=auth)
    assert again.status_code == 404 and error_of(again)["code"] == "not_found"
    # The next pick skips the node that now holds the chunk.
    again_pick = cp_client.lambda_.invoke("pick_replica_target", batch).payload
    assert again_pick["node_id"] not in ("", node["node_id"]) and again_pick["chunks"] == [1]


def test_a_batch_report_records_the_verified_chunks_and_fails_the_rest(
    cp_api: Any, cp_client: Any, cp_stack: Any
) -> None:
    data = os.urandom(3 * CHUNK)
    started, _ = upload(cp_api, data)
    node = register(cp_api, cp_stack)
    auth = {"authorization": f"Bearer {node['credential']}"}
    queued = cp_client.lambda_.invoke(
        "warm_chunk",
        {
            "file_id": started["file_id"],
            "version": started["version"],
            "chunks": [0, 1, 2],
            "node_id": node["node_id"],
            "task_token": "token-3",
        },
    ).payload
    digests = [hashlib.sha256(data[i * CHUNK : (i + 1) * CHUNK]).hexdigest() for i in range(3)]
    answer = cp_api.call(
        "POST",
        f"/nodes/{node['node_id']}/work/{queued['work_id']}",
        {"ok": True, "sha256": [digests[0], "0" * 64]},
        key=False,
        headers=auth,
    )
    assert answer.status_code == 200, answer.body
    body = answer.json_body
    # Chunk 0 is recorded; chunk 1 is wrong and chunk 2 had no digest: the task fails.
    assert body["recorded"] is False and body["chunks_recorded"] == 1
    assert "[1, 2]" in body["error"]
    view = chunk_catalog(cp_stack).file_view(started["file_id"])
    assert [(r.index, r.node_id) for r in view.replicas] == [(0, node["node_id"])]


def test_bad_warm_and_report_input_is_refused(cp_api: Any, cp_client: Any, cp_stack: Any) -> None:
    started, _ = upload(cp_api, os.urandom(100))
    node = register(cp_api, cp_stack)
    base = {
        "file_id": started["file_id"],
        "version": started["version"],
        "node_id": node["node_id"],
        "task_token": "token-4",
    }
    most = 4096  # replication.MAX_BATCH_CHUNKS: a replica block
    for chunks in ([], list(range(most + 1)), ["a"], [-1], None):
        with pytest.raises(InvalidInput, match=f"chunks is a list of 1 to {most}"):
            cp_client.lambda_.invoke("warm_chunk", {**base, "chunks": chunks})
    with pytest.raises(InvalidInput, match="a batch is 1 to"):
        cp_client.lambda_.invoke(
            "pick_replica_target",
            {
                "file_id": started["file_id"],
                "version": started["version"],
                "batch": {"first": 0, "last": most},
            },
        )
    queued = cp_client.lambda_.invoke("warm_chunk", {**base, "chunks": [0]}).payload
    answer = cp_api.call(
        "POST",
        f"/nodes/{node['node_id']}/work/{queued['work_id']}",
        {"ok": True, "sha256": [1, 2]},
        key=False,
        headers={"authorization": f"Bearer {node['credential']}"},
    )
    assert answer.status_code == 400 and error_of(answer)["details"]["field"] == "sha256"


def test_report_with_a_wrong_hash_is_not_recorded(
    cp_api: Any, cp_client: Any, cp_stack: Any
) -> None:
    started, _ = upload(cp_api, os.urandom(100))
    node = register(cp_api, cp_stack)
    other = register(cp_api, cp_stack)
    queued = cp_client.lambda_.invoke(
        "warm_chunk",
        {
            "file_id": started["file_id"],
            "version": started["version"],
            "chunks": [0],
            "node_id": node["node_id"],
            "task_token": "token-2",
        },
    ).payload
    path = f"/nodes/{node['node_id']}/work/{queued['work_id']}"

    def report(by: dict[str, Any]) -> Any:
        return cp_api.call(
            "POST", path, {"ok": True, "sha256": "0" * 64}, key=False, headers=node_auth(by)
        )

    assert report(other).status_code == 401  # another node's credential
    answer = report(node)
    assert answer.status_code == 200 and answer.json_body["recorded"] is False
    view = chunk_catalog(cp_stack).file_view(started["file_id"])
    assert view.replicas == []


def test_under_replicated_chunks_are_a_metric(
    cp_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    results = [
        {"first": 0, "last": 511, "replicated": 512, "under": 0, "under_ranges": []},
        {
            "first": 512,
            "last": 1023,
            "replicated": 500,
            "under": 12,
            "reason": "moves_exhausted",
            "under_ranges": [[600, 605], [700, 705]],
        },
        {
            "first": 1024,
            "last": 1030,
            "replicated": 0,
            "under": 0,
            "gone": True,
            "reason": "gone",
            "under_ranges": [],
        },
    ]
    capsys.readouterr()
    out = cp_client.lambda_.invoke(
        "report_replication", {"file_id": "f" * 32, "version": "v", "results": results}
    ).payload
    assert out["under_replicated"] == [
        {"first": 600, "last": 605, "reason": "moves_exhausted"},
        {"first": 700, "last": 705, "reason": "moves_exhausted"},
    ]
    assert (out["under_replicated_chunks"], out["replicated"], out["chunks"], out["gone"]) == (
        12,
        1012,
        1031,
        True,
    )
    emitted = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"_aws"')
    ]
    assert [m["UnderReplicatedChunks"] for m in emitted if "UnderReplicatedChunks" in m] == [[12.0]]


def test_a_failed_warm_is_retried_on_the_same_node_then_moves(
    cp_api: Any, cp_client: Any, cp_stack: Any
) -> None:
    started, _ = upload(cp_api, os.urandom(2 * CHUNK))
    register(cp_api, cp_stack)
    register(cp_api, cp_stack)
    state = {
        "file_id": started["file_id"],
        "version": started["version"],
        "batch": {"first": 0, "last": 1},
    }
    state = cp_client.lambda_.invoke("pick_replica_target", state).payload
    first_node = state["node_id"]
    waits = []
    for _ in range(3):  # the warm fails three times on the same node
        state = cp_client.lambda_.invoke(
            "pick_replica_target",
            {**state, "failure": {"Error": "WarmFailed", "Cause": "disk full"}},
        ).payload
        waits.append(state["wait_seconds"])
        if state["node_id"] != first_node:
            break
    # Two retries after 1 s and 2 s, then the batch moves to the next node.
    assert waits == [1, 2, 0] and state["tried"] == [first_node]
    assert state["node_id"] not in ("", first_node) and state["chunks"] == [0, 1]


def test_a_heartbeat_hands_at_most_50_work_items_oldest_first(cp_api: Any, cp_stack: Any) -> None:
    from fsnode_core.ids import new_sortable_id
    from fsnode_core.models import WorkItem

    node = register(cp_api, cp_stack)
    catalog = chunk_catalog(cp_stack)
    now = int(time.time())
    queued = []
    for age in range(60, 0, -1):  # 60 items, the oldest first
        created = now - age
        work = WorkItem(
            node_id=node["node_id"],
            work_id=new_sortable_id(created),
            kind="warm",
            file_id="f" * 32,
            version="v" * 32,
            chunk_index=age,
            task_token="t",
            created_at=created,
            expires_at=now + 600,
            chunks=[age],
        )
        catalog.put_work(work)
        queued.append(work.work_id)
    beat = cp_api.call(
        "POST",
        f"/nodes/{node['node_id']}/heartbeat",
        {"used_bytes": 0, "free_bytes": 9, "capacity_bytes": 9, "load": 0.1},
        key=False,
        headers={"authorization": f"Bearer {node['credential']}"},
    )
    assert beat.status_code == 200, beat.body
    assert [w["work_id"] for w in beat.json_body["work"]] == queued[:50]
