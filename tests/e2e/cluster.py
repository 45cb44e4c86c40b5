"""A local stack seen from outside, for the e2e workflow tests: its API, its moto
(tables, bucket, executions) and what its edges hold on disk."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.exceptions import ClientError
from fsnode_core import placement
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.chunks import part_layout
from fsnode_core.models import NodeRecord
from fsnode_core.nodes_store import NodeRegistry

from fsnode.localstack.resources import LOCAL_CREDENTIALS
from fsnode.localstack.stack import StackInfo
from tests.helpers import execution_history, put_parts, wait_for

# Liveness bounds for waits, never a measure of speed.
PATIENCE = 120.0


@dataclass
class Cluster:
    """The stack seen from outside: its API, its moto (tables, bucket, executions)."""

    stack: StackInfo
    env: dict[str, str]  # the control plane's settings, as the stack launched it
    chunk: int  # the stack's chunk size
    heartbeat_timeout: int  # the stack's: an edge silent for longer is not placed

    @property
    def api_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.stack.api_key}"}

    def client(self, service: str) -> Any:
        # The service is named at run time (the stubs type only literal names).
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.stack.aws_endpoint,
            region_name=self.stack.region,
            **LOCAL_CREDENTIALS,
        )

    @property
    def catalog(self) -> ChunkCatalog:
        return ChunkCatalog(self.env["FSNODE_CHUNKS_TABLE"], self.client("dynamodb"))

    @property
    def registry(self) -> NodeRegistry:
        return NodeRegistry(self.env["FSNODE_NODES_TABLE"], self.client("dynamodb"))

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(
            method, f"{self.stack.api}{path}", json=body, headers=self.api_headers, timeout=60
        )

    def node_id(self, index: int) -> str:
        return StackInfo.load(Path(self.stack.state_dir)).edges[index].node_id

    def edge_index(self, node_id: str) -> int:
        edges = StackInfo.load(Path(self.stack.state_dir)).edges
        return next(i for i, edge in enumerate(edges) if edge.node_id == node_id)

    def live(self) -> list[NodeRecord]:
        return placement.eligible(self.registry.list_nodes(), time.time(), self.heartbeat_timeout)

    # -- uploads -------------------------------------------------------------------

    def upload(self, data: bytes, placed: Callable[[list[str]], bool]) -> tuple[str, str]:
        """Upload ``data`` under a fresh file id whose placement order (node ids, first
        choice first) satisfies ``placed``; returns (file_id, version)."""
        chunk = self.chunk
        hashes = [
            hashlib.sha256(data[i : i + chunk]).hexdigest() for i in range(0, len(data), chunk)
        ]
        part_hashes = [
            hashlib.sha256(data[s.offset : s.offset + s.length]).hexdigest()
            for s in part_layout(len(data), chunk)
        ]
        for _ in range(40):
            init = self.api(
                "POST",
                "/files",
                {
                    "path": f"lifecycle/{os.urandom(8).hex()}.mp4",
                    "size": len(data),
                    "content_type": "video/mp4",
                    "chunk_sha256": hashes,
                    "part_sha256": part_hashes,
                },
            )
            assert init.status_code == 200, init.text
            started = init.json()
            order = [node.node_id for node in placement.rank(started["file_id"], self.live())]
            if placed(order):
                break
        else:
            raise AssertionError("no upload id got the wanted placement")
        parts = put_parts(started["parts"], data)
        done = self.api("POST", f"/files/{started['file_id']}/complete", {"parts": parts})
        assert done.status_code == 200, done.text
        return started["file_id"], started["version"]

    # -- executions ----------------------------------------------------------------

    def execution_arn(self, machine: str, name: str) -> str:
        arn = self.env[f"FSNODE_{machine.upper()}_STATE_MACHINE_ARN"]
        return arn.replace(":stateMachine:", ":execution:") + f":{name}"

    def finished(self, arn: str) -> dict[str, Any]:
        sfn = self.client("stepfunctions")

        def done() -> dict[str, Any] | None:
            try:
                described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
            except ClientError:
                return None  # not started yet
            return described if described["status"] != "RUNNING" else None

        return wait_for(done, f"execution {arn} to finish", PATIENCE)

    def executions_for(self, machine: str, file_id: str) -> list[dict[str, Any]]:
        """Every execution of ``machine`` whose input names ``file_id``."""
        sfn = self.client("stepfunctions")
        arn = self.env[f"FSNODE_{machine.upper()}_STATE_MACHINE_ARN"]
        found = []
        for listed in sfn.list_executions(stateMachineArn=arn, maxResults=1000)["executions"]:
            described = sfn.describe_execution(executionArn=listed["executionArn"])
            if json.loads(described["input"]).get("file_id") == file_id:
                found.append(described)
        return found

    def history(self, arn: str) -> list[dict[str, Any]]:
        return execution_history(self.client("stepfunctions"), arn)

    # -- what the edges hold -------------------------------------------------------

    def holders(self, file_id: str) -> dict[int, set[str]]:
        """Per chunk of the current version, the live nodes with a recorded replica."""
        view = self.catalog.file_view(file_id)
        assert view.meta is not None
        live = {node.node_id for node in self.live()}
        out: dict[int, set[str]] = {index: set() for index in range(view.meta.chunk_count())}
        for replica in view.replicas_of(view.meta.version):
            if replica.node_id in live:
                out[replica.index].add(replica.node_id)
        return out

    def cached_chunks(self, index: int, file_id: str) -> dict[int, bytes]:
        """The chunk files edge ``index`` keeps on disk for ``file_id``, by chunk index."""
        root = Path(StackInfo.load(Path(self.stack.state_dir)).edges[index].state_dir)
        return {
            int(p.name): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file() and file_id in p.parts and p.name.isdigit()
        }
