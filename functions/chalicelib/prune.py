"""The scheduled sweep (every minute): dead nodes, lost and hot chunks, files to
tombstone (expired) or collect (past their grace period), retired versions to collect,
published objects a writer left behind, uploads abandoned past their time.

Every start is named after what it acts on (``replicate-loss-…`` per file version and
dead node, ``replicate-hot-…`` per file version and time window, ``gc-FILE-VERSION``),
so overlapping or repeated runs never start the same work twice, and a run that
stopped half way is finished by the next one.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from fsnode_core import placement
from fsnode_core.errors import FsnodeError
from fsnode_core.models import FILE_DELETING, FILE_READY, NODE_DEAD, NODE_RETIRED, NodeRecord
from fsnode_core.published_keys import publish_seq
from fsnode_core.replica_blocks import ReplicaBlock

from chalicelib import aws, gc, lifecycle, public_names, publisher, replication, uploads
from chalicelib.observability import logger, metrics
from chalicelib.settings import get_settings

MAX_HOT_FILES_PER_RUN = 50  # bounds the Queries one run spends on hot files
MAX_SETTLES_PER_RUN = 100  # files whose published objects one run repairs
# A dead node's replica blocks one run reads, starts healing for and forgets (4,096
# chunks each): the rest waits for the next run, so a run stays within Lambda's time
# and memory whatever the node held.
MAX_RECOVERY_BLOCKS_PER_RUN = 500
# A change younger than this is left to its own writer (its publish machine).
SYNC_GRACE_SECONDS = 30
METRIC_NODES_DEAD = "NodesMarkedDead"  # marked by this run (a count of events)
# Nodes dead now (still in the table), sent by every run, 0 included: a gauge the
# DeadNodes alarm can watch (infra/constructs/monitoring.py names it too).
METRIC_DEAD_NODES = "DeadNodes"


def run(now: float | None = None) -> dict[str, Any]:
    """One sweep; returns what it did (tests and logs read it)."""
    moment = time.time() if now is None else now
    settings = get_settings()
    registry = aws.node_registry()
    nodes = registry.list_nodes()
    marked: list[str] = []
    for node in nodes:
        silent = moment - node.last_heartbeat > settings.heartbeat_timeout
        # Conditional on the heartbeat seen: a node that beat meanwhile stays alive.
        if (
            node.status not in NODE_RETIRED
            and silent
            and registry.mark_dead(node.node_id, node.last_heartbeat)
        ):
            marked.append(node.node_id)
            node.status = NODE_DEAD
            public_names.withdraw(node)
    if marked:
        metrics.add_metric(name=METRIC_NODES_DEAD, unit="Count", value=len(marked))
        logger.warning("nodes marked dead", extra={"nodes": marked})
    dead = [node.node_id for node in nodes if node.status == NODE_DEAD]
    metrics.add_metric(name=METRIC_DEAD_NODES, unit="Count", value=len(dead))
    lost: dict[str, int] = {}
    budget = MAX_RECOVERY_BLOCKS_PER_RUN
    # A drained node's copies leave with it, as a dead one's do.
    for node_id in [node.node_id for node in nodes if node.status in NODE_RETIRED]:
        if budget > 0:
            lost[node_id], read = _recover(node_id, budget)
            budget -= read  # a dead node with nothing left to heal costs nothing
    live = placement.eligible(nodes, moment, settings.heartbeat_timeout)
    hot = _replicate_hot(live, moment)
    expired, collected = _collect(moment)
    # Uploads never completed: their S3 upload aborted, their leftovers retired.
    discarded = uploads.sweep_abandoned(int(moment))
    settled = settle_published(moment)
    metrics.flush_metrics(raise_on_empty_metrics=False)
    summary = {
        "marked_dead": marked,
        "lost_replicas": {k: v for k, v in lost.items() if v},
        "hot_replications": hot,
        "expired": expired,
        "collections": collected,
        "uploads_discarded": discarded,
        "published": settled,
    }
    logger.info("prune done", extra=summary)
    return summary


def _recover(node_id: str, budget: int) -> tuple[int, int]:
    """Replicate a dead node's chunks elsewhere, then forget its replica facts: at most
    about ``budget`` of its replica blocks this run (the next run goes on).

    Starts come first: if this run stops before the delete, the next run finds the
    same blocks and starts the same (deduplicated) executions again. Each execution is
    named after the node and the first block it covers, so a version whose blocks span
    two runs gets one execution per part.
    """
    catalog = aws.chunk_catalog()
    blocks = catalog.blocks_on_node(node_id, limit=budget)
    by_version: dict[tuple[str, str], list[ReplicaBlock]] = defaultdict(list)
    for block in blocks:
        by_version[(block.file_id, block.version)].append(block)
    configured = get_settings().replicate_state_machine_arn is not None
    for (file_id, version), group in sorted(by_version.items()):
        first_block = min(block.block for block in group)
        arn = replication.start(
            file_id,
            version,
            chunks=[i for block in group for i in block.chunks],
            reason=replication.REASON_LOSS,
            detail=f"{node_id}/{first_block}",
        )
        if arn is not None or not configured:
            catalog.delete_replicas(group)
    return sum(len(block.chunks) for block in blocks), len(blocks)


def _replicate_hot(live: list[NodeRecord], moment: float) -> list[str]:
    """Files live edges report hot, replicated where chunks lack live copies.

    Named per time window (``FSNODE_HOT_REPLICATION_WINDOW``): a file reported hot by
    every edge on every beat still starts at most one execution per window.
    """
    settings = get_settings()
    ordered: dict[str, None] = {}
    for node in live:
        for file_id in node.hot_files:
            ordered.setdefault(file_id, None)
    live_ids = [node.node_id for node in live]
    window = int(moment // max(settings.hot_replication_window, 1))
    started: list[str] = []
    catalog = aws.chunk_catalog()
    for file_id in list(ordered)[:MAX_HOT_FILES_PER_RUN]:
        view = catalog.file_view(file_id)
        under = replication.under_replicated_chunks(view, live_ids, settings.replication_factor)
        if view.meta is None or not under:
            continue
        # Copies may be on their way: right after an upload its own replication is still
        # placing them, or the last window's hot run is. Starting another now would chase
        # the same chunks twice (and race it for the same nodes).
        version = view.meta.version
        if replication.running(file_id, version) or replication.running(
            file_id, version, replication.REASON_HOT, str(window - 1)
        ):
            continue
        if replication.start(
            file_id, version, chunks=under, reason=replication.REASON_HOT, detail=str(window)
        ):
            started.append(file_id)
    return started


def _collect(moment: float) -> tuple[list[str], list[str]]:
    """Tombstone files whose expiry has passed; start collection for tombstones and
    retired versions whose grace period is over (DELETE and ``complete`` start it at
    once when there is none). Returns (files expired, files whose collection started)."""
    now = int(moment)
    catalog = aws.chunk_catalog()
    expired: list[str] = []
    started: list[str] = []
    for meta in catalog.files_to_collect(now):
        if meta.status == FILE_READY and gc.is_expired(meta, moment):
            try:
                lifecycle.tombstone(meta, now)
                expired.append(meta.file_id)
            except FsnodeError as exc:  # changed meanwhile: the next run looks again
                logger.info(
                    "expired file not tombstoned",
                    extra={"file_id": meta.file_id, "error": exc.message},
                )
        elif meta.status == FILE_DELETING and gc.start(meta.file_id, meta.version, moment):
            started.append(meta.file_id)
    for entry in catalog.versions_to_collect(now):
        if gc.start(entry.file_id, entry.version, moment):
            started.append(entry.file_id)
    return expired, started


def settle_published(moment: float) -> list[str]:
    """Publish what writers that stopped half way left behind (``by_sync`` markers
    older than ``SYNC_GRACE_SECONDS``)."""
    before = publish_seq(moment - SYNC_GRACE_SECONDS)
    settled = []
    for file_id in aws.chunk_catalog().unsynced(before, MAX_SETTLES_PER_RUN):
        try:
            publisher.settle(file_id)
            settled.append(file_id)
        except FsnodeError as exc:
            logger.warning(
                "could not publish a file", extra={"file_id": file_id, "error": exc.message}
            )
    return settled
