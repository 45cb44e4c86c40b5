"""Replicate and GC state machines run for real (moto's interpreter, in-process Lambdas),
and simulated edges that answer their pulled work through the real routes.

A simulated edge does what a real one does with a work item: ``warm`` reads the
version manifest and the batch's bytes from S3 and reports each chunk's SHA-256 (which
the control plane checks); ``evict`` reports success. An edge that is
``offline`` neither heartbeats nor reports.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.models import NODE_ACTIVE, NODE_DRAINING, FileRecord, NodeRecord, ReplicaRecord
from fsnode_core.nodes_store import NodeRegistry
from fsnode_core.published import VersionManifest

from fsnode.localstack.resources import lambda_names, snake_case
from tests.helpers import execution_history, finished_execution
from tests.integration.control_plane_helpers import register
from tests.integration.published_reads import read_head, read_manifest

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
        }
    ],
}
# Short bounds so fault paths finish in seconds (PROTOCOL.md names these settings).
FAST = {
    "FSNODE_WARM_TIMEOUT": "5",
    "FSNODE_EVICT_TIMEOUT": "2",
    "FSNODE_GC_RETRY_WAIT": "1",
    "FSNODE_GC_MAX_WAIT": "40",
    "FSNODE_REPLICATION_MAX_MOVES": "3",
    # Long enough that nodes of earlier tests are not pruned; victims are made stale.
    "FSNODE_HEARTBEAT_TIMEOUT": "600",
}


_DONE = itertools.count()  # the order work was done in, across every simulated edge


def _set_execution(endpoint: str, on: bool) -> None:
    requests.post(
        f"{endpoint}/moto-api/config",
        json={"stepfunctions": {"execute_state_machine": on}},
        timeout=10,
    ).raise_for_status()


@dataclass
class Machines:
    replicate: str
    gc: str
    env: dict[str, str]
    arns: dict[str, str] = field(default_factory=dict)  # every machine, by ASL name
    functions: list[str] = field(default_factory=list)  # the machines' Lambda functions

    def configure(self, **values: str) -> None:
        """Set environment variables of every function the machines invoke."""
        self.env.update(values)
        lam = boto3.client("lambda")
        for name in self.functions:
            lam.update_function_configuration(
                FunctionName=name, Environment={"Variables": self.env}
            )

    def wait(
        self, arn: str, pump: Callable[[], None] | None = None, timeout: float = 40
    ) -> dict[str, Any]:
        return finished_execution(boto3.client("stepfunctions"), arn, timeout, pump)

    def history(self, arn: str) -> list[dict[str, Any]]:
        return execution_history(boto3.client("stepfunctions"), arn)

    def executions(self, machine: str) -> list[dict[str, Any]]:
        executions: list[dict[str, Any]] = boto3.client("stepfunctions").list_executions(
            stateMachineArn=machine, maxResults=1000
        )["executions"]
        return executions


@pytest.fixture(name="machines")
def machines_fixture(cp_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machines]:
    """Every ASL file as a state machine whose Lambdas run the app's handlers in-process."""
    from chalicelib import aws

    from fsnode.localstack import lambda_dispatch

    lambda_dispatch.install(FUNCTIONS)
    _set_execution(cp_env.endpoint, True)
    suffix = os.urandom(4).hex()
    iam, lam, sfn = (boto3.client(s) for s in ("iam", "lambda", "stepfunctions"))
    role = iam.create_role(
        RoleName=f"fsnode-life-{suffix}", AssumeRolePolicyDocument=json.dumps(TRUST)
    )["Role"]["Arn"]
    env = {**cp_env.env, **FAST}
    texts = {
        p.name.removesuffix(".asl.json"): p.read_text()
        for p in sorted((FUNCTIONS / "statemachines").glob("*.asl.json"))
    }
    functions: dict[str, str] = {}
    for text in texts.values():
        for name in lambda_names(text):
            functions.setdefault(
                name,
                lam.create_function(
                    FunctionName=f"fsnode-{name}-{suffix}",
                    Runtime="python3.11",
                    Role=role,
                    Handler=f"app.{name}",
                    Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
                    Environment={"Variables": env},
                )["FunctionArn"],
            )
    arns = {}
    for machine, text in texts.items():
        for placeholder in {p for p in _placeholders(text)}:
            text = text.replace(
                "${" + placeholder + "FunctionArn}", functions[snake_case(placeholder)]
            )
        arns[machine] = sfn.create_state_machine(
            name=f"fsnode-{machine}-{suffix}", definition=text, roleArn=role
        )["stateMachineArn"]
    env.update({f"FSNODE_{m.upper()}_STATE_MACHINE_ARN": a for m, a in arns.items()})
    for name in functions:
        lam.update_function_configuration(
            FunctionName=f"fsnode-{name}-{suffix}", Environment={"Variables": env}
        )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    aws.reset()
    try:
        yield Machines(
            replicate=arns["replicate"],
            gc=arns["gc"],
            env=env,
            arns=arns,
            functions=[f"fsnode-{name}-{suffix}" for name in functions],
        )
    finally:
        for arn in arns.values():
            for ex in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")[
                "executions"
            ]:
                sfn.stop_execution(executionArn=ex["executionArn"])
        _set_execution(cp_env.endpoint, False)
        aws.reset()


def _placeholders(text: str) -> set[str]:
    import re

    return set(re.findall(r"\$\{([A-Za-z0-9]+)FunctionArn\}", text))


@dataclass
class SimEdge:
    """A registered node whose work is answered by ``behaviour``."""

    api: Any
    node: dict[str, Any]
    offline: bool = False
    fail_warm: bool = False
    hot_files: list[str] = field(default_factory=list)
    done: list[dict[str, Any]] = field(default_factory=list)
    manifests: dict[tuple[str, str], VersionManifest] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return str(self.node["node_id"])

    @property
    def bucket(self) -> str:
        return str(self.node["bucket"])

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.node['credential']}"}

    def beat(self) -> None:
        if self.offline:
            return
        answer = self.api.call(
            "POST",
            f"/nodes/{self.node_id}/heartbeat",
            {
                "used_bytes": 0,
                "free_bytes": 10**9,
                "capacity_bytes": 10**9,
                "load": 0.0,
                "hot_files": self.hot_files,
            },
            key=False,
            headers=self.auth,
        )
        assert answer.status_code == 200, answer.body
        for work in answer.json_body["work"]:
            report = self._do(work)
            sent = self.api.call(
                "POST",
                f"/nodes/{self.node_id}/work/{work['work_id']}",
                report,
                key=False,
                headers=self.auth,
            )
            assert sent.status_code in (200, 404), sent.body
            self.done.append({**work, "report": report, "seq": next(_DONE)})

    def _do(self, work: dict[str, Any]) -> dict[str, Any]:
        if work["kind"] == "evict":
            return {"ok": True, "evicted_chunks": 1}
        if self.fail_warm:
            return {"ok": False, "error": {"code": "origin_error", "message": "disk full"}}
        # As an edge reads a file: the head (is the version still served?), the version's
        # manifest from S3, then the batch's bytes in one ranged GET, hashed chunk by chunk.
        head = read_head(self.bucket, work["file_id"])
        if head is None or not head.serves(work["version"]):
            return {"ok": False, "error": {"code": "gone", "message": "file is gone"}}
        key = (work["file_id"], work["version"])
        if key not in self.manifests:  # a version's manifest never changes
            self.manifests[key] = read_manifest(self.bucket, *key)
        manifest = self.manifests[key]
        indices = work["chunks"]
        size, chunk = manifest.size, manifest.chunk_size
        first, last = min(indices), max(indices)
        data = (
            boto3.client("s3")
            .get_object(
                Bucket=manifest.origin.bucket,
                Key=manifest.origin.key,
                Range=f"bytes={first * chunk}-{min((last + 1) * chunk, size) - 1}",
            )["Body"]
            .read()
        )
        return {
            "ok": True,
            "sha256": [
                hashlib.sha256(data[(i - first) * chunk : (i - first + 1) * chunk]).hexdigest()
                for i in indices
            ],
        }


@pytest.fixture(name="isolated")
def isolated_fixture(cp_api: Any, cp_stack: Any) -> Iterator[Callable[[int], list[SimEdge]]]:
    """Drain every node of earlier tests; hand out fresh simulated edges."""
    registry = NodeRegistry(cp_stack.env["FSNODE_NODES_TABLE"], boto3.client("dynamodb"))
    others = [n.node_id for n in registry.list_nodes() if n.status == NODE_ACTIVE]
    for node_id in others:
        registry.set_status(node_id, NODE_DRAINING, expected=NODE_ACTIVE)
    made: list[SimEdge] = []

    def edges(count: int) -> list[SimEdge]:
        new = [SimEdge(cp_api, register(cp_api, cp_stack)) for _ in range(count)]
        made.extend(new)
        return new

    try:
        yield edges
    finally:
        for edge in made:
            if (node := registry.get(edge.node_id)) and node.status == NODE_ACTIVE:
                registry.set_status(edge.node_id, NODE_DRAINING, expected=NODE_ACTIVE)
        for node_id in others:
            if (node := registry.get(node_id)) and node.status == NODE_DRAINING:
                registry.set_status(node_id, NODE_ACTIVE, expected=NODE_DRAINING)


def pump(edges: list[SimEdge]) -> Callable[[], None]:
    def run() -> None:
        for edge in edges:
            edge.beat()

    return run


def stores(stack: Any) -> tuple[ChunkCatalog, NodeRegistry]:
    ddb = boto3.client("dynamodb")
    return (
        ChunkCatalog(stack.env["FSNODE_CHUNKS_TABLE"], ddb),
        NodeRegistry(stack.env["FSNODE_NODES_TABLE"], ddb),
    )


def hold_replicas(
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


def object_exists(bucket: str, key: str) -> bool:
    try:
        boto3.client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def gc_arn(machine: str, file_id: str, version: str) -> str:
    return machine.replace(":stateMachine:", ":execution:") + f":gc-{file_id}-{version}"


def delete_for_gc(api: Any, sfn_machines: Any, file_id: str, version: str) -> str:
    """DELETE the file; with no grace period (the test stack's) its collection starts."""
    answer = api.call("DELETE", f"/files/{file_id}")
    assert answer.status_code == 202, answer.body
    return gc_arn(sfn_machines.gc, file_id, version)


def file_record(catalog: ChunkCatalog, file_id: str) -> FileRecord:
    meta = catalog.get_file(file_id)
    assert meta is not None
    return meta


def node_record(registry: NodeRegistry, node_id: str) -> NodeRecord:
    node = registry.get(node_id)
    assert node is not None
    return node
