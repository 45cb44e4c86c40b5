"""Replication: start the state machine, pick chunk targets, hand work to edges, take reports.

The control plane never calls an edge: ``warm_chunk`` writes a work item carrying the
Step Functions task token, the edge pulls it on heartbeat and reports back, and the
report calls SendTaskSuccess/SendTaskFailure (DESIGN: commands travel by pull).

Per chunk the state machine loops ``pick_replica_target`` -> ``warm_chunk`` until the
chunk is on ``FSNODE_REPLICATION_FACTOR`` live nodes. A failed or timed-out warm is
caught and handed back here: the same node is tried again after a backoff (a Wait
state), ``WARM_ATTEMPTS_PER_NODE`` times in all, then the chunk moves to the next node
in placement order, at most ``FSNODE_REPLICATION_MAX_MOVES`` times. Each attempt is a
new task with its own token; a task ``Retry`` would reuse the token, and moto's
interpreter then hands every retry the first attempt's answer. ``report_replication``
ends the execution with the chunks still under-replicated, in its output and as a metric.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core import placement
from fsnode_core.errors import Gone, InvalidInput, Unavailable
from fsnode_core.ids import check_id, new_id
from fsnode_core.models import FILE_READY, WORK_EVICT, WORK_WARM, FileView, ReplicaRecord, WorkItem
from fsnode_core.store_errors import error_code

from chalicelib import auth, aws, executions, hashing, invoke, manifests
from chalicelib.observability import METRIC_WORK_REPORTED, logger, metrics
from chalicelib.settings import get_settings

WORK_TTL_SECONDS = 15 * 60
WARM_ATTEMPTS_PER_NODE = 3  # one try and two retries on a node before moving on
RETRY_BACKOFF_SECONDS = (1, 2)  # waits before the second and third try on a node
EVICT_WHOLE_VERSION = -1  # an evict work item's chunk_index: every chunk of the version
METRIC_UNDER_REPLICATED_CHUNKS = "UnderReplicatedChunks"
METRIC_REPLICATION_STARTED = "ReplicationStarted"
# Why an execution runs; part of its name, so each trigger dedupes on its own.
REASON_UPLOAD = "upload"
REASON_HOT = "hot"
REASON_LOSS = "loss"


def execution_name(file_id: str, version: str, reason: str = REASON_UPLOAD,
                   detail: str = "") -> str:
    """One execution per file version and trigger: a repeated start is refused.

    Upload completion keeps the readable ``replicate-FILE-VERSION``; other triggers
    hash ``(file, version, reason, detail)`` to stay within the 80-character limit.
    """
    if reason == REASON_UPLOAD:
        return f"replicate-{file_id}-{version}"
    return executions.digest_name(f"replicate-{reason}", file_id, version, reason, detail)


def start(file_id: str, version: str, *, chunks: list[int] | None = None,
          first_chunks: int | None = None, reason: str = REASON_UPLOAD,
          detail: str = "") -> str | None:
    """Start replicating a file version (when the state machine is configured).

    Returns the execution's ARN (also when it already existed), None when nothing
    started; a start that failed is picked up again by prune.
    """
    payload: dict[str, Any] = {"file_id": file_id, "version": version}
    if chunks is not None:
        payload["chunks"] = sorted(set(chunks))
    elif first_chunks is not None:
        payload["first_chunks"] = first_chunks
    started = executions.start(get_settings().replicate_state_machine_arn,
                               execution_name(file_id, version, reason, detail), payload)
    if started is None:
        return None
    if started.new:
        metrics.add_metric(name=METRIC_REPLICATION_STARTED, unit="Count", value=1)
    return started.arn


def running(file_id: str, version: str, reason: str = REASON_UPLOAD, detail: str = "") -> bool:
    """Whether the execution this trigger names for the file version still runs."""
    arn = get_settings().replicate_state_machine_arn
    return executions.status(arn, execution_name(file_id, version, reason, detail)) == "RUNNING"


def after_upload(file_id: str, version: str) -> dict[str, Any] | None:
    """Upload completion's trigger: the first chunks, so playback starts hot.

    With ``FSNODE_REPLICATION_STRATEGY=sync`` the caller waits (up to
    ``FSNODE_REPLICATION_SYNC_TIMEOUT``) and gets the execution's output.
    """
    settings = get_settings()
    arn = start(file_id, version, first_chunks=settings.replication_first_chunks)
    if arn is None or settings.replication_strategy != "sync":
        return None
    described = executions.wait(arn, settings.replication_sync_timeout)
    if described is None:
        logger.warning("replication still running after the sync bound",
                       extra={"file_id": file_id})
        return {"status": "RUNNING"}
    output = json.loads(described.get("output") or "{}")
    return {"status": described["status"], **output}


def plan(event: dict[str, Any]) -> dict[str, Any]:
    """The chunks to replicate, each as the starting state of the per-chunk loop."""
    settings = get_settings()
    file_id = check_id(str(event.get("file_id", "")), "file_id")
    version = str(event.get("version", ""))
    view = aws.chunk_catalog().file_view(file_id)
    current = _current(view, version)
    all_indices = list(range(view.meta.chunk_count())) if current and view.meta else []
    wanted = event.get("chunks")
    if isinstance(wanted, list):
        indices = sorted({int(i) for i in wanted} & set(all_indices))
    elif event.get("first_chunks") is not None:
        indices = all_indices[:max(int(event["first_chunks"]), 0)]
    else:
        indices = all_indices
    live = _live_nodes()
    targets = placement.choose(file_id, live, settings.replication_factor)
    chunks = [{"file_id": file_id, "version": version, "chunk_index": index, "node_id": "",
               "tried": [], "attempts": 0, "warm_timeout": settings.warm_timeout}
              for index in (indices if current else [])]
    return {"file_id": file_id, "version": version, "current": current,
            "factor": settings.replication_factor, "targets": [n.node_id for n in targets],
            "under_replicated": len(targets) < settings.replication_factor, "chunks": chunks}


def pick_target(event: dict[str, Any]) -> dict[str, Any]:
    """One turn of a chunk's loop: done, the same node again after a backoff
    (``wait_seconds``), or the next node to warm it on.

    A ``failure`` (the warm on ``node_id`` failed or timed out) counts an attempt on
    that node; after ``WARM_ATTEMPTS_PER_NODE`` of them, or once the node is no longer
    live, the node is marked tried and the chunk moves on in placement order.
    """
    settings = get_settings()
    file_id = check_id(str(event.get("file_id", "")), "file_id")
    version = str(event.get("version", ""))
    index = int(event["chunk_index"])
    tried = [str(n) for n in event.get("tried") or []]
    last = str(event.get("node_id") or "")
    failed = event.get("failure") is not None and bool(last)
    attempts = int(event.get("attempts") or 0) + (1 if failed else 0)
    state: dict[str, Any] = {"file_id": file_id, "version": version, "chunk_index": index,
                             "node_id": "", "tried": tried, "attempts": 0, "wait_seconds": 0,
                             "warm_timeout": int(event.get("warm_timeout")
                                                 or settings.warm_timeout)}
    view = aws.chunk_catalog().file_view(file_id)
    if not _current(view, version) or view.meta is None \
            or not 0 <= index < view.meta.chunk_count():
        return {**state, "done": True, "replicated": False, "gone": True, "holders": []}
    live = _live_nodes()
    live_ids = {node.node_id for node in live}
    holders = sorted(r.node_id for r in view.replicas
                     if r.version == version and r.index == index and r.node_id in live_ids)
    state["holders"] = holders
    if len(holders) >= settings.replication_factor:
        return {**state, "done": True, "replicated": True}
    if failed:
        if attempts < WARM_ATTEMPTS_PER_NODE and last in live_ids and last not in holders:
            wait = RETRY_BACKOFF_SECONDS[min(attempts, len(RETRY_BACKOFF_SECONDS)) - 1]
            return {**state, "node_id": last, "attempts": attempts, "wait_seconds": wait,
                    "done": False, "replicated": False}
        if last not in tried:
            tried.append(last)
    if len(tried) > settings.replication_max_moves:
        return {**state, "done": True, "replicated": False, "reason": "moves_exhausted"}
    skip = set(holders) | set(tried)
    candidates = [n for n in placement.rank(file_id, live) if n.node_id not in skip]
    if not candidates:
        return {**state, "done": True, "replicated": False, "reason": "no_candidate_node"}
    return {**state, "node_id": candidates[0].node_id, "done": False, "replicated": False}


def summarize(event: dict[str, Any]) -> dict[str, Any]:
    """The execution's output: which chunks reached the factor and which did not."""
    results = [r for r in event.get("results") or [] if isinstance(r, dict)]
    under = [{"chunk_index": r["chunk_index"], "holders": r.get("holders", []),
              "tried": r.get("tried", []), "reason": r.get("reason", "")}
             for r in results if not r.get("replicated") and not r.get("gone")]
    metrics.add_metric(name=METRIC_UNDER_REPLICATED_CHUNKS, unit="Count", value=len(under))
    metrics.flush_metrics(raise_on_empty_metrics=False)
    if under:
        logger.warning("chunks left under-replicated",
                       extra={"file_id": event.get("file_id"), "chunks": under})
    return {"file_id": event.get("file_id"), "version": event.get("version"),
            "chunks": sorted((r for r in results), key=lambda r: r["chunk_index"]),
            "replicated": sum(1 for r in results if r.get("replicated")),
            "under_replicated": sorted(under, key=lambda r: r["chunk_index"])}


def warm(event: dict[str, Any]) -> dict[str, Any]:
    """Queue a warm command for the target edge, keeping the task token for its report."""
    # An earlier attempt's item stays queued: it may be another execution's (a hot and a
    # loss run can warm the same chunk), and a second warm of a chunk costs nothing.
    return queue_work(event, WORK_WARM, int(event["chunk_index"]))


def queue_work(event: dict[str, Any], kind: str, chunk_index: int) -> dict[str, Any]:
    """Write a work item for ``event['node_id']`` carrying the waiting task's token."""
    node_id = check_id(str(event.get("node_id", "")), "node_id")
    token = event.get("task_token")
    if not isinstance(token, str) or not token:
        raise InvalidInput("task_token is required", field="task_token")
    now = int(time.time())
    work = WorkItem(
        node_id=node_id, work_id=new_id(), kind=kind,
        file_id=check_id(str(event.get("file_id", "")), "file_id"),
        version=str(event["version"]), chunk_index=chunk_index,
        task_token=token, created_at=now, expires_at=now + WORK_TTL_SECONDS,
    )
    aws.chunk_catalog().put_work(work)
    return {"work_id": work.work_id, "node_id": node_id}


def report(node_id: str, work_id: str, headers: Any, body: dict[str, Any]) -> dict[str, Any]:
    """An edge's report on its work (the route): the node is checked here, then the
    ``report_work`` function records it and wakes the waiting task (the API handler's
    role holds no task-token rights)."""
    check_id(node_id, "node_id")
    check_id(work_id, "work_id")
    auth.require_node(headers, node_id, auth.MAY_SERVE)
    ok = body.get("ok")
    if not isinstance(ok, bool):
        raise InvalidInput("ok must be true or false", field="ok")
    return invoke.call(get_settings().report_work_function, {
        "node_id": node_id, "work_id": work_id, "ok": ok,
        **{name: body[name] for name in ("sha256", "error") if name in body}})


def apply_report(event: dict[str, Any]) -> dict[str, Any]:
    """The ``report_work`` function: record a verified replica, then wake the waiting
    task (an authenticated node's report, from ``report``)."""
    node_id = check_id(str(event.get("node_id", "")), "node_id")
    work_id = check_id(str(event.get("work_id", "")), "work_id")
    ok = bool(event.get("ok"))
    body = event
    catalog = aws.chunk_catalog()
    work = catalog.take_work(node_id, work_id)
    sfn = aws.client("stepfunctions")
    outcome: dict[str, Any] = {"work_id": work_id, "node_id": node_id}
    error = None if ok else str(body.get("error", "edge reported failure"))[:256]
    error_name = "EvictFailed" if work.kind == WORK_EVICT else "WarmFailed"
    leftover = False  # the edge holds bytes of a version that is being collected
    if ok and work.kind == WORK_WARM:
        meta = catalog.get_file(work.file_id)
        if meta is None or meta.status != FILE_READY or meta.version != work.version \
                or not 0 <= work.chunk_index < meta.chunk_count():
            error, leftover = "chunk is not part of the current file version", True
        elif body.get("sha256") != _chunk_hash(work):
            error = "reported sha256 does not match the chunk"
    try:
        if error is None and work.kind == WORK_WARM:
            try:
                catalog.put_replica_if_current(ReplicaRecord(
                    file_id=work.file_id, version=work.version, index=work.chunk_index,
                    node_id=node_id, created_at=int(time.time())))
            except Gone:
                error, error_name = "file version is no longer current", "FileGone"
                leftover = True
        if not work.task_token:
            pass  # nobody waits for it (a leftover eviction)
        elif error is None:
            sfn.send_task_success(taskToken=work.task_token, output=json.dumps(
                {**outcome, "kind": work.kind, "chunk_index": work.chunk_index, "done": True}))
        else:
            sfn.send_task_failure(taskToken=work.task_token, error=error_name, cause=error)
    except ClientError as exc:
        # The task already timed out or the execution ended: the report itself still counts.
        if error_code(exc) not in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
            raise Unavailable("could not report to the workflow") from exc
        logger.info("workflow no longer waits for this work", extra={"work_id": work_id})
    except BotoCoreError as exc:
        raise Unavailable("could not report to the workflow") from exc
    if leftover:
        _evict_leftover(work)
    metrics.add_metric(name=METRIC_WORK_REPORTED, unit="Count", value=1)
    return {**outcome, "recorded": error is None, "error": error}


def _chunk_hash(work: WorkItem) -> str:
    """The warmed chunk's SHA-256: the manifest's, or, for an import not hashed yet,
    the origin's, read now (no edge's word alone is taken)."""
    manifest = manifests.read_manifest(work.file_id, work.version)
    known = manifest.chunk_hash(work.chunk_index)
    return known if known is not None else hashing.origin_digest(manifest, work.chunk_index)


def _evict_leftover(warm: WorkItem) -> None:
    """A warm that finished after its version was tombstoned: collection has already
    listed the edges to evict from, without this one, so have it drop the copy itself.
    Nothing waits for this work (no task token)."""
    now = int(time.time())
    aws.chunk_catalog().put_work(WorkItem(
        node_id=warm.node_id, work_id=new_id(), kind=WORK_EVICT, file_id=warm.file_id,
        version=warm.version, chunk_index=EVICT_WHOLE_VERSION, task_token="",
        created_at=now, expires_at=now + WORK_TTL_SECONDS))
    logger.info("late copy of a collected version: evict queued",
                extra={"file_id": warm.file_id, "node_id": warm.node_id})


def under_replicated_chunks(view: FileView, live_ids: Iterable[str], factor: int) -> list[int]:
    """Indices of the current version's chunks held by fewer than ``factor`` live nodes."""
    if view.meta is None or view.meta.status != FILE_READY:
        return []
    live = set(live_ids)
    counts: dict[int, int] = dict.fromkeys(range(view.meta.chunk_count()), 0)
    for replica in view.replicas:
        if replica.version == view.meta.version and replica.node_id in live \
                and replica.index in counts:
            counts[replica.index] += 1
    return sorted(index for index, count in counts.items() if count < factor)


def _current(view: FileView, version: str) -> bool:
    return view.meta is not None and view.meta.status == FILE_READY \
        and view.meta.version == version


def _live_nodes() -> list[Any]:
    settings = get_settings()
    return placement.eligible(aws.node_registry().list_nodes(), time.time(),
                              settings.heartbeat_timeout)
