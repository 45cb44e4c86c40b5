"""Replication: start the state machine, plan batches of chunks, pick each batch's next
node, summarize.

A version's chunks are replicated in batches of at most ``MAX_BATCH_CHUNKS`` (and
``FSNODE_HASH_BATCH_BYTES``, which bounds the origin read that verifies an import's
chunks). ``statemachines/replicate.asl.json`` runs the batches in a Distributed Map, each
as its own child execution, so no state holds one entry per chunk and no history grows
with the chunk count (a 50,000-chunk file of small chunks is 13 batches; a child's
history is a few dozen events). Per batch the child loops ``pick_replica_target`` -> ``warm_chunk``
until every chunk of the batch is on ``FSNODE_REPLICATION_FACTOR`` live nodes: the
chunks lacking a copy on the next node in placement order go to that node as ONE work
item (``edge_work``). A failed or timed-out warm is caught and handed back here: the
same node is tried again after a backoff (a Wait state), ``WARM_ATTEMPTS_PER_NODE``
times in all, then the batch moves to the next node, at most
``FSNODE_REPLICATION_MAX_MOVES`` times. Each attempt is a new task with its own token
(a task ``Retry`` would reuse the token, and moto's interpreter then hands every retry
the first attempt's answer). ``report_replication`` ends the execution with the count
of chunks still under-replicated and their ranges, in its output and as a metric.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from fsnode_core import placement
from fsnode_core.errors import InvalidInput
from fsnode_core.ids import check_id
from fsnode_core.models import FILE_READY, WORK_WARM, FileRecord, FileView
from fsnode_core.replica_blocks import BLOCK_CHUNKS, coarsen, holders_by_chunk, to_ranges

from chalicelib import aws, edge_work, executions
from chalicelib.observability import logger, metrics
from chalicelib.settings import get_settings

WARM_ATTEMPTS_PER_NODE = 3  # one try and two retries on a node before moving on
RETRY_BACKOFF_SECONDS = (1, 2)  # waits before the second and third try on a node
# Chunks per batch (one work item, one report, one child execution): a replica block,
# so a verified batch is one item update; FSNODE_HASH_BATCH_BYTES bounds its bytes.
MAX_BATCH_CHUNKS = BLOCK_CHUNKS
MAX_INPUT_RANGES = 1000  # an execution's chunk selection, as runs (about 16 KB)
MAX_RANGES_PER_BATCH = 8  # under-replicated runs one batch reports
MAX_REPORTED_RANGES = 200  # under-replicated runs the execution's output lists
EVICT_WHOLE_VERSION = edge_work.EVICT_WHOLE_VERSION
METRIC_UNDER_REPLICATED_CHUNKS = "UnderReplicatedChunks"
METRIC_REPLICATION_STARTED = "ReplicationStarted"
# Why an execution runs; part of its name, so each trigger dedupes on its own.
REASON_UPLOAD = "upload"
REASON_HOT = "hot"
REASON_LOSS = "loss"


def execution_name(
    file_id: str, version: str, reason: str = REASON_UPLOAD, detail: str = ""
) -> str:
    """One execution per file version and trigger: a repeated start is refused.

    Upload completion keeps the readable ``replicate-FILE-VERSION``; other triggers
    hash ``(file, version, reason, detail)`` to stay within the 80-character limit.
    """
    if reason == REASON_UPLOAD:
        return f"replicate-{file_id}-{version}"
    return executions.digest_name(f"replicate-{reason}", file_id, version, reason, detail)


def start(
    file_id: str,
    version: str,
    *,
    chunks: Iterable[int] | None = None,
    first_chunks: int | None = None,
    reason: str = REASON_UPLOAD,
    detail: str = "",
) -> str | None:
    """Start replicating a file version (when the state machine is configured).

    Returns the execution's ARN (also when it already existed), None when nothing
    started; a start that failed is picked up again by prune.
    """
    payload: dict[str, Any] = {"file_id": file_id, "version": version}
    if chunks is not None:
        # As runs, a bounded number of them: a superset where there were more (the
        # execution acts only on the chunks that still lack copies).
        payload["ranges"] = coarsen(to_ranges(chunks), MAX_INPUT_RANGES)
    elif first_chunks is not None:
        payload["first_chunks"] = first_chunks
    started = executions.start(
        get_settings().replicate_state_machine_arn,
        execution_name(file_id, version, reason, detail),
        payload,
    )
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
        logger.warning("replication still running after the sync bound", extra={"file_id": file_id})
        return {"status": "RUNNING"}
    output = json.loads(described.get("output") or "{}")
    return {"status": described["status"], **output}


def plan(event: dict[str, Any]) -> dict[str, Any]:
    """The batches to replicate: ``{first, last}`` runs of at most a batch each, from
    the execution's selection (``ranges``, ``first_chunks``, or every chunk)."""
    settings = get_settings()
    file_id = check_id(str(event.get("file_id", "")), "file_id")
    version = str(event.get("version", ""))
    meta = aws.chunk_catalog().get_file(file_id)
    current = _is_current(meta, version)
    count = meta.chunk_count() if meta is not None and current else 0
    selection = _selection(event, count)
    size = batch_chunks(meta.chunk_size if meta is not None else 1)
    batches = [
        {"first": first, "last": min(first + size - 1, last)}
        for first_run, last in selection
        for first in range(first_run, last + 1, size)
    ]
    targets = placement.choose(file_id, _live_nodes(), settings.replication_factor)
    return {
        "file_id": file_id,
        "version": version,
        "current": current,
        "factor": settings.replication_factor,
        "targets": [n.node_id for n in targets],
        "under_replicated": len(targets) < settings.replication_factor,
        "chunks": sum(b["last"] - b["first"] + 1 for b in batches),
        "warm_timeout": settings.warm_timeout,
        "batches": batches,
    }


def batch_chunks(chunk_size: int) -> int:
    """Chunks per batch: ``MAX_BATCH_CHUNKS``, fewer when the origin read that verifies
    an import's batch would pass ``FSNODE_HASH_BATCH_BYTES``."""
    return max(1, min(MAX_BATCH_CHUNKS, get_settings().hash_batch_bytes // max(chunk_size, 1)))


def _selection(event: dict[str, Any], count: int) -> list[tuple[int, int]]:
    """The chunks an execution acts on, as sorted, disjoint inclusive runs."""
    ranges = event.get("ranges")
    if isinstance(ranges, list):
        runs = sorted((max(int(a), 0), min(int(b), count - 1)) for a, b in ranges)
        merged: list[tuple[int, int]] = []
        for first, last in runs:
            if first > last:
                continue
            if merged and first <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], last))
            else:
                merged.append((first, last))
        return merged
    if event.get("first_chunks") is not None:
        count = min(count, max(int(event["first_chunks"]), 0))
    return [(0, count - 1)] if count else []


def pick_target(event: dict[str, Any]) -> dict[str, Any]:
    """One turn of a batch's loop: done, the same node again after a backoff
    (``wait_seconds``), or the next node to warm the batch's missing chunks on.

    A ``failure`` (the warm on ``node_id`` failed or timed out) counts an attempt on
    that node; after ``WARM_ATTEMPTS_PER_NODE`` of them, or once the node is no longer
    live, the node is marked tried and the batch moves on in placement order. When done
    the state shrinks to the batch's summary (the Map's result for it).
    """
    settings = get_settings()
    file_id = check_id(str(event.get("file_id", "")), "file_id")
    version = str(event.get("version", ""))
    given = event.get("batch")
    batch: dict[str, Any] = given if isinstance(given, dict) else event
    first, last = int(batch["first"]), int(batch["last"])
    if not 0 <= last - first < MAX_BATCH_CHUNKS:
        raise InvalidInput("a batch is 1 to MAX_BATCH_CHUNKS chunks", field="batch")
    tried = [str(n) for n in event.get("tried") or []]
    previous = str(event.get("node_id") or "")
    failed = event.get("failure") is not None and bool(previous)
    attempts = int(event.get("attempts") or 0) + (1 if failed else 0)
    state: dict[str, Any] = {
        "file_id": file_id,
        "version": version,
        "first": first,
        "last": last,
        "node_id": "",
        "chunks": [],
        "tried": tried,
        "attempts": 0,
        "wait_seconds": 0,
        "done": False,
        "warm_timeout": int(event.get("warm_timeout") or settings.warm_timeout),
    }
    meta = aws.chunk_catalog().get_file(file_id)
    if not _is_current(meta, version) or meta is None or last >= meta.chunk_count():
        return _batch_done(first, last, [], "gone")
    live = _live_nodes()
    live_ids = {node.node_id for node in live}
    blocks = aws.chunk_catalog().replica_blocks(file_id, version, first, last)
    held = holders_by_chunk(blocks, first, last, live_ids)
    needy = [index for index, nodes in held.items() if len(nodes) < settings.replication_factor]
    if not needy:
        return _batch_done(first, last, [], "")
    if failed:
        lacking = [i for i in needy if previous not in held[i]]
        facts = {
            "file_id": file_id,
            "first": first,
            "node_id": previous,
            "attempts": attempts,
            "failure": _failure_name(event["failure"]),
        }
        if attempts < WARM_ATTEMPTS_PER_NODE and previous in live_ids and lacking:
            wait = RETRY_BACKOFF_SECONDS[min(attempts, len(RETRY_BACKOFF_SECONDS)) - 1]
            logger.warning(
                "warm failed: same node again after a backoff",
                extra={**facts, "wait_seconds": wait},
            )
            return {
                **state,
                "node_id": previous,
                "chunks": lacking,
                "attempts": attempts,
                "wait_seconds": wait,
            }
        logger.warning("warm failed: the batch moves on", extra=facts)
        if previous not in tried:
            tried.append(previous)
    if len(tried) > settings.replication_max_moves:
        return _batch_done(first, last, needy, "moves_exhausted")
    for node in placement.rank(file_id, live):
        lacking = [i for i in needy if node.node_id not in held[i]]
        if node.node_id not in tried and lacking:
            return {**state, "node_id": node.node_id, "chunks": lacking}
    return _batch_done(first, last, needy, "no_candidate_node")


def _failure_name(failure: Any) -> str:
    """The caught error's name (``WarmFailed``, ``States.Timeout``...)."""
    return str(failure.get("Error", "")) if isinstance(failure, dict) else ""


def _batch_done(first: int, last: int, under: list[int], reason: str) -> dict[str, Any]:
    """A batch's result: small whatever the batch (a few runs of what stayed under)."""
    gone = reason == "gone"
    return {
        "done": True,
        "first": first,
        "last": last,
        "gone": gone,
        "replicated": 0 if gone else last - first + 1 - len(under),
        "under": len(under),
        "reason": reason,
        "under_ranges": coarsen(to_ranges(under), MAX_RANGES_PER_BATCH),
    }


def summarize(event: dict[str, Any]) -> dict[str, Any]:
    """The execution's output: how many chunks reached the factor, and which did not
    (as runs, at most ``MAX_REPORTED_RANGES`` of them; ``under_replicated_chunks`` is
    the full count)."""
    results = [r for r in event.get("results") or [] if isinstance(r, dict)]
    under_count = sum(int(r.get("under") or 0) for r in results)
    under = sorted(
        (
            {"first": a, "last": b, "reason": r.get("reason", "")}
            for r in results
            for a, b in r.get("under_ranges") or []
        ),
        key=lambda run: run["first"],
    )
    metrics.add_metric(name=METRIC_UNDER_REPLICATED_CHUNKS, unit="Count", value=under_count)
    metrics.flush_metrics(raise_on_empty_metrics=False)
    if under_count:
        logger.warning(
            "chunks left under-replicated",
            extra={
                "file_id": event.get("file_id"),
                "chunks": under_count,
                "ranges": under[:MAX_REPORTED_RANGES],
            },
        )
    return {
        "file_id": event.get("file_id"),
        "version": event.get("version"),
        "batches": len(results),
        "chunks": sum(int(r["last"]) - int(r["first"]) + 1 for r in results),
        "replicated": sum(int(r.get("replicated") or 0) for r in results),
        "gone": any(r.get("gone") for r in results),
        "under_replicated_chunks": under_count,
        "under_replicated": under[:MAX_REPORTED_RANGES],
    }


def warm(event: dict[str, Any]) -> dict[str, Any]:
    """Queue one warm command for a batch's chunks on the target edge, keeping the task
    token for its report."""
    # An earlier attempt's item stays queued: it may be another execution's (a hot and a
    # loss run can warm the same chunk), and a second warm of a chunk costs nothing.
    chunks = event.get("chunks")
    if (
        not isinstance(chunks, list)
        or not 0 < len(chunks) <= MAX_BATCH_CHUNKS
        or not all(isinstance(i, int) and i >= 0 for i in chunks)
    ):
        raise InvalidInput(
            f"chunks is a list of 1 to {MAX_BATCH_CHUNKS} chunk indices", field="chunks"
        )
    return edge_work.queue_work(event, WORK_WARM, min(chunks), sorted(set(chunks)))


def under_replicated_chunks(view: FileView, live_ids: Iterable[str], factor: int) -> list[int]:
    """Indices of the current version's chunks held by fewer than ``factor`` live nodes."""
    if view.meta is None or view.meta.status != FILE_READY or not view.meta.chunk_count():
        return []
    held = holders_by_chunk(
        view.blocks_of(view.meta.version), 0, view.meta.chunk_count() - 1, set(live_ids)
    )
    return [index for index, nodes in held.items() if len(nodes) < factor]


def _is_current(meta: FileRecord | None, version: str) -> bool:
    return meta is not None and meta.status == FILE_READY and meta.version == version


def _live_nodes() -> list[Any]:
    settings = get_settings()
    return placement.eligible(
        aws.node_registry().list_nodes(), time.time(), settings.heartbeat_timeout
    )
