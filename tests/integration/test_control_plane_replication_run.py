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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from fsnode_core.models import NODE_ACTIVE, NODE_DRAINING
from fsnode_core.nodes_store import NodeRegistry
from test_control_plane_files import CHUNK, upload
from test_control_plane_nodes import register

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
ASL = FUNCTIONS / "statemachines" / "replicate.asl.json"
TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": "sts:AssumeRole",
    "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]}}]}


def _set_execution(endpoint: str, on: bool) -> None:
    requests.post(f"{endpoint}/moto-api/config",
                  json={"stepfunctions": {"execute_state_machine": on}},
                  timeout=10).raise_for_status()


@pytest.fixture()
def replicate_machine(cp_env: Any) -> Iterator[str]:
    """The real ASL with moto Lambda functions whose invocations run the app's handlers."""
    from fsnode.localstack import lambda_dispatch

    lambda_dispatch.install(FUNCTIONS)
    _set_execution(cp_env.endpoint, True)
    suffix = os.urandom(4).hex()
    role = boto3.client("iam").create_role(RoleName=f"fsnode-test-{suffix}",
                                           AssumeRolePolicyDocument=json.dumps(TRUST))
    role_arn = role["Role"]["Arn"]
    text = ASL.read_text()
    for name, placeholder in (("plan_replication", "PlanReplication"),
                              ("warm_chunk", "WarmChunk")):
        arn = boto3.client("lambda").create_function(
            FunctionName=f"fsnode-{name}-{suffix}", Runtime="python3.11", Role=role_arn,
            Handler=f"app.{name}", Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
            Environment={"Variables": dict(cp_env.env)},
        )["FunctionArn"]
        text = text.replace("${" + placeholder + "FunctionArn}", arn)
    machine = boto3.client("stepfunctions").create_state_machine(
        name=f"fsnode-replicate-{suffix}", definition=text, roleArn=role_arn)["stateMachineArn"]
    try:
        yield machine
    finally:
        _set_execution(cp_env.endpoint, False)


@pytest.mark.parametrize("failing_edge", [False, True], ids=["all-ok", "one-edge-fails"])
def test_replication_completes_through_pulled_work(cp_api: Any, cp_stack: Any,
                                                   replicate_machine: str,
                                                   failing_edge: bool) -> None:
    registry = NodeRegistry(cp_stack.env["FSNODE_NODES_TABLE"], boto3.client("dynamodb"))
    others = [n.node_id for n in registry.list_nodes() if n.status == NODE_ACTIVE]
    for node_id in others:  # only this test's two edges may be targets
        registry.set_status(node_id, NODE_DRAINING, expected=NODE_ACTIVE)
    try:
        edges = [register(cp_api, cp_stack) for _ in range(2)]
        data = os.urandom(CHUNK + 3)
        started, _ = upload(cp_api, data)
        sfn = boto3.client("stepfunctions")
        execution = sfn.start_execution(
            stateMachineArn=replicate_machine, name=os.urandom(8).hex(),
            input=json.dumps({"file_id": started["file_id"], "version": started["version"]}),
        )["executionArn"]
        hashes = [hashlib.sha256(data[i:i + CHUNK]).hexdigest() for i in (0, CHUNK)]
        reported: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for edge in edges:
                auth = {"authorization": f"Bearer {edge['credential']}"}
                beat = cp_api.call("POST", f"/nodes/{edge['node_id']}/heartbeat",
                                   {"used_bytes": 0, "free_bytes": 1, "capacity_bytes": 1,
                                    "load": 0.0}, key=False, headers=auth).json_body
                fails = failing_edge and edge is edges[1]
                for work in beat["work"]:
                    report = ({"ok": False, "error": "disk full"} if fails
                              else {"ok": True, "sha256": hashes[work["chunk_index"]]})
                    cp_api.call("POST", f"/nodes/{edge['node_id']}/work/{work['work_id']}",
                                report, key=False, headers=auth)
                    reported.add(work["work_id"])
            status = sfn.describe_execution(executionArn=execution)
            if status["status"] != "RUNNING":
                break
            time.sleep(0.3)
        assert status["status"] == "SUCCEEDED", status
        results = json.loads(status["output"])["results"]
        assert len(results) == 4  # 2 chunks x 2 edges
        outcome = {(r["node_id"], r["chunk_index"]): r["replicated"] for r in results}
        good, bad = edges[0]["node_id"], edges[1]["node_id"]
        assert outcome == {(good, 0): True, (good, 1): True,
                           (bad, 0): not failing_edge, (bad, 1): not failing_edge}
        # A failing edge's chunk is tried 1 + MaxAttempts (2) times before the Catch
        # records under-replication: 2 good reports + 2 chunks x 3 attempts.
        assert len(reported) == (8 if failing_edge else 4)
        if failing_edge:
            failed = [r for r in results if not r["replicated"]]
            assert all(r["failure"]["Error"] == "WarmFailed" for r in failed)
    finally:
        for node_id in others:
            registry.set_status(node_id, NODE_ACTIVE, expected=NODE_DRAINING)
