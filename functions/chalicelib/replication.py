"""Replication: start the state machine, plan chunk targets, hand work to edges, take reports.

The control plane never calls an edge: ``warm_chunk`` writes a work item carrying the
Step Functions task token, the edge pulls it on heartbeat and reports back, and the
report calls SendTaskSuccess/SendTaskFailure (DESIGN: commands travel by pull).
"""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core import placement
from fsnode_core.errors import Gone, InvalidInput, NotFound, Unavailable
from fsnode_core.ids import check_id, new_id
from fsnode_core.models import FILE_READY, WORK_WARM, ReplicaRecord, WorkItem
from fsnode_core.store_errors import error_code

from chalicelib import auth, aws
from chalicelib.observability import METRIC_WORK_REPORTED, logger, metrics
from chalicelib.settings import get_settings

WORK_TTL_SECONDS = 15 * 60


def execution_name(file_id: str, version: str) -> str:
    """One execution per file version: a repeated start is refused by Step Functions."""
    return f"replicate-{file_id}-{version}"[:80]


def start(file_id: str, version: str) -> str | None:
    """Start replicating a file version (when the state machine is configured)."""
    arn = get_settings().replicate_state_machine_arn
    if not arn:
        return None
    try:
        answer = aws.client("stepfunctions").start_execution(
            stateMachineArn=arn, name=execution_name(file_id, version),
            input=json.dumps({"file_id": file_id, "version": version}),
        )
    except ClientError as exc:
        if error_code(exc) == "ExecutionAlreadyExists":
            return None
        logger.exception("could not start replication", extra={"file_id": file_id})
        return None  # the upload stands; prune finds under-replicated chunks later
    except BotoCoreError:
        logger.exception("could not start replication", extra={"file_id": file_id})
        return None
    return str(answer["executionArn"])


def plan(event: dict[str, Any]) -> dict[str, Any]:
    """Chunk -> target node tasks: the top placement nodes that lack each chunk."""
    settings = get_settings()
    file_id = check_id(str(event.get("file_id", "")), "file_id")
    version = str(event.get("version", ""))
    view = aws.chunk_catalog().file_view(file_id)
    if view.meta is None:
        raise NotFound("no such file", file_id=file_id)
    if view.meta.status != FILE_READY or view.meta.version != version:
        raise Gone("file version is no longer current", file_id=file_id)
    wanted = event.get("chunks")
    indices = ([int(i) for i in wanted] if isinstance(wanted, list)
               else [chunk.index for chunk in view.chunks])
    live = placement.eligible(aws.node_registry().list_nodes(), time.time(),
                              settings.heartbeat_timeout)
    targets = placement.choose(file_id, live, settings.replication_factor)
    held = {(r.index, r.node_id) for r in view.replicas if r.version == version}
    tasks = [
        {"file_id": file_id, "version": version, "chunk_index": index, "node_id": node.node_id}
        for index in indices for node in targets if (index, node.node_id) not in held
    ]
    return {"file_id": file_id, "version": version, "targets": [n.node_id for n in targets],
            "under_replicated": len(targets) < settings.replication_factor, "tasks": tasks}


def warm(event: dict[str, Any]) -> dict[str, Any]:
    """Queue a warm command for the target edge, keeping the task token for its report."""
    node_id = check_id(str(event.get("node_id", "")), "node_id")
    token = event.get("task_token")
    if not isinstance(token, str) or not token:
        raise InvalidInput("task_token is required", field="task_token")
    now = int(time.time())
    work = WorkItem(
        node_id=node_id, work_id=new_id(), kind=WORK_WARM,
        file_id=check_id(str(event.get("file_id", "")), "file_id"),
        version=str(event["version"]), chunk_index=int(event["chunk_index"]),
        task_token=token, created_at=now, expires_at=now + WORK_TTL_SECONDS,
    )
    aws.chunk_catalog().put_work(work)
    return {"work_id": work.work_id, "node_id": node_id}


def report(node_id: str, work_id: str, headers: Any, body: dict[str, Any]) -> dict[str, Any]:
    """An edge's report on its work: record the replica, then wake the waiting task."""
    check_id(node_id, "node_id")
    check_id(work_id, "work_id")
    auth.require_node(headers, node_id)
    ok = body.get("ok")
    if not isinstance(ok, bool):
        raise InvalidInput("ok must be true or false", field="ok")
    catalog = aws.chunk_catalog()
    work = catalog.take_work(node_id, work_id)
    sfn = aws.client("stepfunctions")
    outcome: dict[str, Any] = {"work_id": work_id, "node_id": node_id}
    error = None if ok else str(body.get("error", "edge reported failure"))[:256]
    if ok:
        view = catalog.file_view(work.file_id)
        chunk = next((c for c in view.chunks if c.index == work.chunk_index), None)
        if chunk is None or chunk.version != work.version:
            error = "chunk is not part of the current file version"
        elif body.get("sha256") != chunk.sha256:
            error = "reported sha256 does not match the chunk"
    try:
        if error is None:
            catalog.put_replica(ReplicaRecord(file_id=work.file_id, version=work.version,
                                              index=work.chunk_index, node_id=node_id,
                                              created_at=int(time.time())))
            sfn.send_task_success(taskToken=work.task_token, output=json.dumps(
                {**outcome, "chunk_index": work.chunk_index, "replicated": True}))
        else:
            sfn.send_task_failure(taskToken=work.task_token, error="WarmFailed", cause=error)
    except ClientError as exc:
        # The task already timed out or the execution ended: the report itself still counts.
        if error_code(exc) not in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
            raise Unavailable("could not report to the workflow") from exc
        logger.info("workflow no longer waits for this work", extra={"work_id": work_id})
    except BotoCoreError as exc:
        raise Unavailable("could not report to the workflow") from exc
    metrics.add_metric(name=METRIC_WORK_REPORTED, unit="Count", value=1)
    return {**outcome, "recorded": error is None, "error": error}
