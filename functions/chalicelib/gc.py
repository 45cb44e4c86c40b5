"""Garbage collection of one file version: the steps of ``statemachines/gc.asl.json``.

A version is collected once it has stopped being current (tombstoned, or replaced and
retired) and its grace period is over: prune starts ``gc`` for due entries of the
``by_collect`` index. A live current version is never collected (the execution
fails; delete the file first). Order keeps every record true: the uploaded data we
own goes first, then every replica edge evicts (pulled work with a task token; an
offline node is waited for, within ``FSNODE_GC_MAX_WAIT``, unless prune declares it
dead), and the items go last, a deleted file's ``meta`` tombstone after everything
else, then the version manifest (a hashing job that finishes meanwhile finds no
version to write for), and a deleted file's head and any tree key left. An imported
object belongs to the customer: only our records of it and our manifests are deleted.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.errors import Conflict, InvalidInput, Unavailable
from fsnode_core.ids import check_id
from fsnode_core.models import FILE_READY, NODE_ACTIVE, SOURCE_IMPORT, WORK_EVICT, FileRecord
from fsnode_core.published_keys import (
    data_key,
    head_key,
    parse_tree_key,
    tree_path_prefix,
    version_manifest_key,
)
from fsnode_core.store_errors import error_code

from chalicelib import aws, edge_work, executions
from chalicelib.observability import logger, metrics
from chalicelib.settings import get_settings

METRIC_GC_STARTED = "GarbageCollectionStarted"
METRIC_FILES_COLLECTED = "FilesCollected"
METRIC_EVICTIONS_ABANDONED = "EvictionsAbandoned"
RETRY_WINDOW_SECONDS = 3600  # a failed collection is started again at most hourly
EVICT_WHOLE_VERSION = edge_work.EVICT_WHOLE_VERSION


def execution_name(file_id: str, version: str) -> str:
    """One collection per file version (DELETE and prune start the same name)."""
    return f"gc-{file_id}-{version}"


def start(file_id: str, version: str, now: float | None = None) -> str | None:
    """Start collecting a file version; a failed earlier collection is retried hourly."""
    arn = get_settings().gc_state_machine_arn
    payload = {"file_id": file_id, "version": version}
    started = executions.start(arn, execution_name(file_id, version), payload)
    if started is None or arn is None:
        return None
    if started.new:
        metrics.add_metric(name=METRIC_GC_STARTED, unit="Count", value=1)
        return started.arn
    try:
        status = aws.client("stepfunctions").describe_execution(executionArn=started.arn)["status"]
    except (ClientError, BotoCoreError):
        logger.exception("could not read a collection's status", extra={"file_id": file_id})
        return started.arn
    if status in ("RUNNING", "SUCCEEDED"):
        return started.arn
    window = int((time.time() if now is None else now) // RETRY_WINDOW_SECONDS)
    retry = executions.start(
        arn, executions.digest_name("gc-retry", file_id, version, str(window)), payload
    )
    return retry.arn if retry else None


def step(event: dict[str, Any]) -> dict[str, Any]:
    """The ``gc_step`` Lambda: one step of the state machine, chosen by ``action``."""
    action = event.get("action")
    handler = _STEPS.get(str(action))
    if handler is None:
        raise InvalidInput(f"unknown gc action {action!r}", field="action")
    file_id = check_id(str(event.get("file_id", "")), "file_id")
    version = str(event.get("version", ""))
    if not version:
        raise InvalidInput("version is required", field="version")
    return handler(file_id, version, event)


def _tombstone(file_id: str, version: str, event: dict[str, Any]) -> dict[str, Any]:
    """What this collection owns: the version must not be live; a deleted file's own
    tombstone means its head and tree keys go too."""
    settings = get_settings()
    meta = aws.chunk_catalog().get_file(file_id)
    if meta is not None and meta.version == version and meta.status == FILE_READY:
        raise Conflict(
            "this version is live: delete the file (or replace it) first",
            file_id=file_id,
            version=version,
        )
    own_key = uploaded_key(file_id, version)
    ours = meta is not None and meta.version == version
    owned = not ours or (
        meta is not None
        and meta.source != SOURCE_IMPORT
        and meta.bucket == settings.bucket
        and meta.key == own_key
    )
    return {
        "file_id": file_id,
        "version": version,
        "found": ours,
        "owned": owned,
        "bucket": settings.bucket,
        "key": own_key,
        "file_deleted": ours,
        "path": meta.path if meta is not None else "",
        "evict_timeout": settings.evict_timeout,
        "retry_wait": settings.gc_retry_wait,
        "deadline": int(time.time()) + settings.gc_max_wait,
    }


def _delete_data(file_id: str, version: str, event: dict[str, Any]) -> dict[str, Any]:
    """The uploaded bytes when they are ours (an unfinished upload leaves parts, aborted
    here); the manifest goes with the items, last."""
    s3 = aws.client("s3")
    bucket = get_settings().bucket
    upload = aws.chunk_catalog().get_upload(file_id)
    if upload is not None and upload.version == version:
        with contextlib.suppress(ClientError):
            s3.abort_multipart_upload(
                Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id
            )
    if not event.get("owned"):
        return {"deleted": False, "reason": "imported object: the customer's, kept"}
    _delete(
        s3, str(event.get("bucket") or bucket), str(event.get("key") or data_key(file_id, version))
    )
    return {"deleted": True, "bucket": event.get("bucket"), "key": event.get("key")}


def _delete(s3: Any, bucket: str, key: str) -> None:
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) not in ("NoSuchKey", "404", "NoSuchBucket"):
            raise Unavailable("could not delete an origin object", key=key) from exc
    except BotoCoreError as exc:
        raise Unavailable("the origin bucket is unreachable") from exc


def _delete_published(file_id: str, path: str) -> None:
    """A collected file's head and any tree key of it still at its path."""
    s3 = aws.client("s3")
    bucket = get_settings().bucket
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=tree_path_prefix(path)
        ):
            for entry in page.get("Contents", []):
                parsed = parse_tree_key(entry["Key"])
                if parsed is not None and parsed.path == path and parsed.file_id == file_id:
                    _delete(s3, bucket, entry["Key"])
    except (ClientError, BotoCoreError) as exc:
        raise Unavailable("could not list a path's tree keys") from exc
    _delete(s3, bucket, head_key(file_id))


def _list_evictions(file_id: str, version: str, event: dict[str, Any]) -> dict[str, Any]:
    catalog = aws.chunk_catalog()
    view = catalog.file_view(file_id)
    blocks = view.blocks_of(version)  # a few items per node, whatever the chunk count
    registry = aws.node_registry()
    nodes: list[str] = []
    gone: list[str] = []
    for node_id in sorted({b.node_id for b in blocks}):
        node = registry.get(node_id)
        (gone if node is None or node.status != NODE_ACTIVE else nodes).append(node_id)
    # A forgotten, dead, drained or draining node will never pull work: nothing to
    # wait for (a draining node's copy is not served past the manifest bound either).
    catalog.delete_replicas([b for b in blocks if b.node_id in gone])
    carried = {name: event[name] for name in ("evict_timeout", "retry_wait", "deadline")}
    return {
        "nodes": [
            {"file_id": file_id, "version": version, "node_id": node_id, **carried}
            for node_id in nodes
        ]
    }


def _evict(file_id: str, version: str, event: dict[str, Any]) -> dict[str, Any]:
    node_id = check_id(str(event.get("node_id", "")), "node_id")
    # A retry replaces the previous attempt's item, so a returning edge evicts once.
    aws.chunk_catalog().drop_work(node_id, WORK_EVICT, file_id, version)
    return edge_work.queue_work(
        {**event, "file_id": file_id, "version": version}, WORK_EVICT, EVICT_WHOLE_VERSION
    )


def _check_node(file_id: str, version: str, event: dict[str, Any]) -> dict[str, Any]:
    """After a failed or timed-out evict: wait for the node, or stop waiting."""
    node_id = check_id(str(event.get("node_id", "")), "node_id")
    node = aws.node_registry().get(node_id)
    state = {
        k: event[k]
        for k in ("file_id", "version", "node_id", "evict_timeout", "retry_wait", "deadline")
    }
    if node is None or node.status != NODE_ACTIVE:  # no work reaches it any more
        return {**state, "next": "drop", "abandoned": False, "node_gone": True}
    if time.time() >= float(event["deadline"]):
        return {**state, "next": "drop", "abandoned": True, "node_gone": False}
    return {**state, "next": "wait", "abandoned": False, "node_gone": False}


def _drop_replicas(file_id: str, version: str, event: dict[str, Any]) -> dict[str, Any]:
    node_id = check_id(str(event.get("node_id", "")), "node_id")
    catalog = aws.chunk_catalog()
    view = catalog.file_view(file_id)
    catalog.delete_replicas([b for b in view.blocks_of(version) if b.node_id == node_id])
    state = event.get("input") or {}  # the loop's state: CheckNode's verdict, if any
    abandoned, gone = bool(state.get("abandoned")), bool(state.get("node_gone"))
    if abandoned:
        # The edge never answered: it refuses the file (manifest 410) and its own LRU
        # reclaims the bytes; its queued evict stays until the work item expires.
        logger.warning("eviction abandoned", extra={"file_id": file_id, "node_id": node_id})
    return {
        "node_id": node_id,
        "evicted": not abandoned and not gone,
        "abandoned": abandoned,
        "node_gone": gone,
    }


def _delete_items(file_id: str, version: str, event: dict[str, Any]) -> dict[str, Any]:
    deleted = aws.chunk_catalog().delete_version_items(file_id, version)
    # After the items: a hashing job that finishes now finds no version to write for.
    _delete(aws.client("s3"), get_settings().bucket, version_manifest_key(file_id, version))
    if event.get("file_deleted") and event.get("path"):
        _delete_published(file_id, str(event["path"]))
    results = [r for r in event.get("evicted") or [] if isinstance(r, dict)]
    abandoned = sorted(r["node_id"] for r in results if r.get("abandoned"))
    metrics.add_metric(name=METRIC_FILES_COLLECTED, unit="Count", value=1)
    metrics.add_metric(name=METRIC_EVICTIONS_ABANDONED, unit="Count", value=len(abandoned))
    metrics.flush_metrics(raise_on_empty_metrics=False)
    data = event.get("data") or {}
    return {
        "file_id": file_id,
        "version": version,
        "items_deleted": deleted,
        "object_deleted": bool(data.get("deleted")),
        "evicted": sorted(r["node_id"] for r in results if r.get("evicted")),
        "dead_nodes": sorted(r["node_id"] for r in results if r.get("node_gone")),
        "abandoned": abandoned,
    }


def uploaded_key(file_id: str, version: str) -> str:
    """The object key of an uploaded version (``uploads.start`` names it so)."""
    return data_key(file_id, version)


def is_expired(meta: FileRecord, now: float) -> bool:
    """Past its expiry (files without one never expire)."""
    return meta.expires_at is not None and meta.expires_at <= now


_STEPS = {
    "tombstone": _tombstone,
    "delete_data": _delete_data,
    "list_evictions": _list_evictions,
    "evict": _evict,
    "check_node": _check_node,
    "drop_replicas": _drop_replicas,
    "delete_items": _delete_items,
}
