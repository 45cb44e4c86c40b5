"""Replication: execution start on complete, plan/warm handlers, work pulled and reported."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from fsnode_core.catalog import ChunkCatalog

from tests.integration.control_plane_helpers import CHUNK, error_of, register, upload

ASL = Path(__file__).resolve().parents[2] / "functions" / "statemachines" / "replicate.asl.json"


def _asl_with_arns() -> str:
    text = ASL.read_text()
    for placeholder in set(re.findall(r"\$\{(\w+)FunctionArn\}", text)):
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", placeholder).lower()
        text = text.replace("${" + placeholder + "FunctionArn}",
                            f"arn:aws:lambda:us-east-1:123456789012:function:fsnode-{name}")
    return text


def test_asl_placeholders_name_the_apps_lambda_functions(cp_app: Any) -> None:
    definition = json.loads(ASL.read_text())
    placeholders = set(re.findall(r"\$\{(\w+)FunctionArn\}", ASL.read_text()))
    names = {re.sub(r"(?<!^)(?=[A-Z])", "_", p).lower() for p in placeholders}
    assert names == {"plan_replication", "pick_replica_target", "warm_chunk",
                     "report_replication"}
    for name in names:
        assert callable(getattr(cp_app, name))
    warm = definition["States"]["WarmChunks"]["Iterator"]["States"]["WarmChunk"]
    assert warm["Resource"].endswith("waitForTaskToken") and warm["Retry"] and warm["Catch"]
    # A caught failure goes back to target picking, which moves the chunk to another node.
    assert warm["Catch"][0]["Next"] == "PickTarget"
    assert definition["States"]["WarmChunks"]["MaxConcurrency"] > 0


def test_complete_starts_one_replication_per_version(cp_api: Any, cp_stack: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import aws

    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="fsnode-test-replicate", definition=_asl_with_arns(),
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
        assert json.loads(described["input"]) == {"file_id": started["file_id"],
                                                  "version": started["version"],
                                                  "first_chunks": 4}
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

    plan = cp_client.lambda_.invoke("plan_replication",
                                    {"file_id": file_id, "version": version}).payload
    assert len(plan["targets"]) == 2 and not plan["under_replicated"]
    assert [c["chunk_index"] for c in plan["chunks"]] == [0, 1, 2]
    first = cp_client.lambda_.invoke("plan_replication", {"file_id": file_id, "version": version,
                                                          "first_chunks": 2}).payload
    assert [c["chunk_index"] for c in first["chunks"]] == [0, 1]
    picked = cp_client.lambda_.invoke("pick_replica_target", plan["chunks"][1]).payload
    assert picked["done"] is False and picked["node_id"] == plan["targets"][0]

    queued = cp_client.lambda_.invoke("warm_chunk", {
        "file_id": file_id, "version": version, "chunk_index": 1,
        "node_id": node["node_id"], "task_token": "token-1"}).payload
    beat = cp_api.call("POST", f"/nodes/{node['node_id']}/heartbeat",
                       {"used_bytes": 0, "free_bytes": 9, "capacity_bytes": 9, "load": 0.1},
                       key=False, headers=auth).json_body
    assert beat["work"] == [{"work_id": queued["work_id"], "kind": "warm", "file_id": file_id,
                             "version": version, "chunk_index": 1}]

    digest = hashlib.sha256(data[CHUNK:2 * CHUNK]).hexdigest()
    path = f"/nodes/{node['node_id']}/work/{queued['work_id']}"
    answer = cp_api.call("POST", path, {"ok": True, "sha256": digest}, key=False, headers=auth)
    assert answer.status_code == 200, answer.body
    assert answer.json_body["recorded"] is True
    view = ChunkCatalog(cp_stack.env["FSNODE_CHUNKS_TABLE"], boto3.client("dynamodb")).file_view(
        file_id)
    assert [(r.index, r.node_id) for r in view.replicas] == [(1, node["node_id"])]
    # The work is consumed: a repeated report finds nothing, and the next heartbeat is empty.
    again = cp_api.call("POST", path, {"ok": True, "sha256": digest}, key=False, headers=auth)
    assert again.status_code == 404 and error_of(again)["code"] == "not_found"
    # The next pick skips the node that now holds the chunk.
    again_pick = cp_client.lambda_.invoke("pick_replica_target", plan["chunks"][1]).payload
    assert again_pick["holders"] == [node["node_id"]]
    assert again_pick["node_id"] not in ("", node["node_id"])


def test_report_with_a_wrong_hash_is_not_recorded(cp_api: Any, cp_client: Any,
                                                  cp_stack: Any) -> None:
    started, _ = upload(cp_api, os.urandom(100))
    node = register(cp_api, cp_stack)
    other = register(cp_api, cp_stack)
    queued = cp_client.lambda_.invoke("warm_chunk", {
        "file_id": started["file_id"], "version": started["version"], "chunk_index": 0,
        "node_id": node["node_id"], "task_token": "token-2"}).payload
    path = f"/nodes/{node['node_id']}/work/{queued['work_id']}"
    stolen = cp_api.call("POST", path, {"ok": True, "sha256": "0" * 64}, key=False,
                         headers={"authorization": f"Bearer {other['credential']}"})
    assert stolen.status_code == 401
    answer = cp_api.call("POST", path, {"ok": True, "sha256": "0" * 64}, key=False,
                         headers={"authorization": f"Bearer {node['credential']}"})
    assert answer.status_code == 200 and answer.json_body["recorded"] is False
    view = ChunkCatalog(cp_stack.env["FSNODE_CHUNKS_TABLE"], boto3.client("dynamodb")).file_view(
        started["file_id"])
    assert view.replicas == []


def test_under_replicated_chunks_are_a_metric(cp_client: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    results = [{"chunk_index": 0, "replicated": True, "holders": ["a", "b"]},
               {"chunk_index": 1, "replicated": False, "holders": ["a"], "tried": ["c"],
                "reason": "moves_exhausted"},
               {"chunk_index": 2, "replicated": False, "gone": True}]
    capsys.readouterr()
    out = cp_client.lambda_.invoke("report_replication", {
        "file_id": "f" * 32, "version": "v", "results": results}).payload
    assert out["under_replicated"] == [{"chunk_index": 1, "holders": ["a"], "tried": ["c"],
                                        "reason": "moves_exhausted"}]
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines()
               if line.startswith('{"_aws"')]
    assert [m["UnderReplicatedChunks"] for m in emitted if "UnderReplicatedChunks" in m] == [[1.0]]
