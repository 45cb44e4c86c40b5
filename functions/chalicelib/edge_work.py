"""Work handed to edges, and their reports on it.

The control plane never calls an edge: a workflow step writes a work item carrying its
Step Functions task token, the edge pulls it on heartbeat (at most
``MAX_WORK_PER_HEARTBEAT`` items, oldest first) and reports back, and the report calls
SendTaskSuccess/SendTaskFailure (DESIGN: commands travel by pull). A ``warm`` names a
batch of chunks (at most ``replication.MAX_BATCH_CHUNKS``): the edge reports one
SHA-256 per chunk, in order; the verified ones are recorded in one transaction.
"""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.errors import Gone, InvalidInput, Unavailable
from fsnode_core.ids import check_id, new_sortable_id
from fsnode_core.models import FILE_READY, WORK_EVICT, WORK_WARM, WorkItem
from fsnode_core.store_errors import error_code

from chalicelib import auth, aws, hashing, invoke, manifests
from chalicelib.observability import METRIC_WORK_REPORTED, logger, metrics
from chalicelib.settings import get_settings

WORK_TTL_SECONDS = 15 * 60
MAX_WORK_PER_HEARTBEAT = 50  # items in one heartbeat answer (each at most one batch)
EVICT_WHOLE_VERSION = -1  # an evict work item's chunk_index: every chunk of the version
_MISMATCHES_NAMED = 20


def queue_work(
    event: dict[str, Any], kind: str, chunk_index: int, chunks: list[int] | None = None
) -> dict[str, Any]:
    """Write a work item for ``event['node_id']`` carrying the waiting task's token."""
    node_id = check_id(str(event.get("node_id", "")), "node_id")
    token = event.get("task_token")
    if not isinstance(token, str) or not token:
        raise InvalidInput("task_token is required", field="task_token")
    now = int(time.time())
    work = WorkItem(
        node_id=node_id,
        work_id=new_sortable_id(now),
        kind=kind,
        file_id=check_id(str(event.get("file_id", "")), "file_id"),
        version=str(event["version"]),
        chunk_index=chunk_index,
        task_token=token,
        created_at=now,
        expires_at=now + WORK_TTL_SECONDS,
        chunks=list(chunks or []),
    )
    aws.chunk_catalog().put_work(work)
    return {"work_id": work.work_id, "node_id": node_id}


def pending_for(node_id: str, now: int) -> list[WorkItem]:
    """What one heartbeat answer hands a node: its oldest work, bounded."""
    return aws.chunk_catalog().pending_work(node_id, now, MAX_WORK_PER_HEARTBEAT)


def report(node_id: str, work_id: str, headers: Any, body: dict[str, Any]) -> dict[str, Any]:
    """An edge's report on its work (the route): the node is checked here, then the
    ``report_work`` function records it and wakes the waiting task (the API handler's
    role holds no task-token rights)."""
    check_id(node_id, "node_id")
    check_id(work_id, "work_id")
    auth.require_node(headers, node_id, auth.MAY_WORK)
    ok = body.get("ok")
    if not isinstance(ok, bool):
        raise InvalidInput("ok must be true or false", field="ok")
    sha256 = body.get("sha256")
    if (
        sha256 is not None
        and not isinstance(sha256, str)
        and not (isinstance(sha256, list) and all(isinstance(s, str) for s in sha256))
    ):
        raise InvalidInput("sha256 is a hex digest or a list of them", field="sha256")
    return invoke.call(
        get_settings().report_work_function,
        {
            "node_id": node_id,
            "work_id": work_id,
            "ok": ok,
            **{name: body[name] for name in ("sha256", "error") if name in body},
        },
    )


def apply_report(event: dict[str, Any]) -> dict[str, Any]:
    """The ``report_work`` function: record verified replicas, then wake the waiting
    task (an authenticated node's report, from ``report``)."""
    node_id = check_id(str(event.get("node_id", "")), "node_id")
    work_id = check_id(str(event.get("work_id", "")), "work_id")
    ok = bool(event.get("ok"))
    catalog = aws.chunk_catalog()
    work = catalog.take_work(node_id, work_id)
    outcome: dict[str, Any] = {"work_id": work_id, "node_id": node_id}
    error = None if ok else str(event.get("error", "edge reported failure"))[:256]
    error_name = "EvictFailed" if work.kind == WORK_EVICT else "WarmFailed"
    leftover = False  # the edge holds bytes of a version that is being collected
    recorded: list[int] = []
    if ok and work.kind == WORK_WARM:
        meta = catalog.get_file(work.file_id)
        chunks = warm_chunks(work)
        if (
            meta is None
            or meta.status != FILE_READY
            or meta.version != work.version
            or not all(0 <= i < meta.chunk_count() for i in chunks)
        ):
            error, leftover = "chunk is not part of the current file version", True
        else:
            recorded, wrong = _verified(work, event.get("sha256"))
            if wrong:
                error = f"reported sha256 does not match chunks {wrong[:_MISMATCHES_NAMED]}"
            try:
                if recorded:
                    catalog.put_replicas_if_current(work.file_id, work.version, node_id, recorded)
            except Gone:
                error, error_name, leftover = "file version is no longer current", "FileGone", True
                recorded = []
    _wake(work, outcome, error, error_name)
    if leftover:
        _evict_leftover(work)
    metrics.add_metric(name=METRIC_WORK_REPORTED, unit="Count", value=1)
    return {**outcome, "recorded": error is None, "chunks_recorded": len(recorded), "error": error}


def warm_chunks(work: WorkItem) -> list[int]:
    """A warm's chunks (an item written before batches names one, ``chunk_index``)."""
    return list(work.chunks) or [work.chunk_index]


def _wake(work: WorkItem, outcome: dict[str, Any], error: str | None, error_name: str) -> None:
    """Complete the waiting task; a task that stopped waiting is no error."""
    if not work.task_token:
        return  # nobody waits for it (a leftover eviction)
    sfn = aws.client("stepfunctions")
    try:
        if error is None:
            sfn.send_task_success(
                taskToken=work.task_token,
                output=json.dumps(
                    {**outcome, "kind": work.kind, "chunk_index": work.chunk_index, "done": True}
                ),
            )
        else:
            sfn.send_task_failure(taskToken=work.task_token, error=error_name, cause=error)
    except ClientError as exc:
        # The task already timed out or the execution ended: the report itself still counts.
        if error_code(exc) not in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
            raise Unavailable("could not report to the workflow") from exc
        logger.info("workflow no longer waits for this work", extra={"work_id": work.work_id})
    except BotoCoreError as exc:
        raise Unavailable("could not report to the workflow") from exc


def _verified(work: WorkItem, reported: Any) -> tuple[list[int], list[int]]:
    """(chunks whose reported SHA-256 is the chunk's, chunks whose is not or is missing).

    The manifest's hashes, or, for an import not hashed yet, the origin's, read now in
    one ranged GET (no edge's word alone is taken)."""
    chunks = warm_chunks(work)
    digests = [reported] if isinstance(reported, str) else list(reported or [])
    manifest = manifests.read_manifest(work.file_id, work.version)
    known = {index: manifest.chunk_hash(index) for index in chunks}
    unknown = [index for index, digest in known.items() if digest is None]
    if unknown:
        first, last = min(unknown), max(unknown)
        read = hashing.origin_digests(manifest, first, last - first + 1)
        known.update({index: read[index - first].hex() for index in unknown})
    good: list[int] = []
    bad: list[int] = []
    for position, index in enumerate(chunks):
        claimed = digests[position] if position < len(digests) else None
        (good if claimed == known[index] else bad).append(index)
    return good, bad


def _evict_leftover(warm: WorkItem) -> None:
    """A warm that finished after its version was tombstoned: collection has already
    listed the edges to evict from, without this one, so have it drop the copy itself.
    Nothing waits for this work (no task token)."""
    now = int(time.time())
    aws.chunk_catalog().put_work(
        WorkItem(
            node_id=warm.node_id,
            work_id=new_sortable_id(now),
            kind=WORK_EVICT,
            file_id=warm.file_id,
            version=warm.version,
            chunk_index=EVICT_WHOLE_VERSION,
            task_token="",
            created_at=now,
            expires_at=now + WORK_TTL_SECONDS,
        )
    )
    logger.info(
        "late copy of a collected version: evict queued",
        extra={"file_id": warm.file_id, "node_id": warm.node_id},
    )
