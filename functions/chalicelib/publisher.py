"""Publishing a file's state to S3 for edges: its head and its tree key
(``fsnode_core.published``), after every change DynamoDB records.

Order (docs/PROTOCOL.md, "Published S3 objects"): the version manifest is written
before the change; the change itself is one DynamoDB write that also sets the file's
``by_sync`` marker; then ``publish`` PUTs the head and the new tree key at once (the
request handler may only PUT) and starts the ``publish`` state machine, whose
``publish_file`` Lambda (which may delete) removes the path's other tree keys and
clears the marker if the file has not changed since. Whatever a writer that died
left undone, prune finds through ``by_sync`` and ``settle``s the same way. Each of them
writes the head conditionally (``heads``): a writer holding an older state than S3's
head writes nothing, so the head never goes back.
"""

from __future__ import annotations

import contextlib
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.errors import Conflict, Unavailable
from fsnode_core.ids import check_id
from fsnode_core.models import FILE_READY, FileRecord
from fsnode_core.published import STATUS_DELETED, STATUS_READY, Head
from fsnode_core.published_keys import (
    parse_tree_key,
    publish_seq,
    tree_key,
    tree_path_prefix,
)

from chalicelib import aws, executions, heads
from chalicelib.observability import logger
from chalicelib.settings import get_settings

SETTLE_ATTEMPTS = 5


def next_seq(previous: int) -> int:
    """The ``seq`` of a new change: now in microseconds, and always past the last one
    (a clock that stepped back must not make readers ignore the change)."""
    return max(publish_seq(), previous + 1)


def head_of(meta: FileRecord) -> Head:
    ready = meta.status == FILE_READY
    return Head(
        file_id=meta.file_id,
        path=meta.path,
        status=STATUS_READY if ready else STATUS_DELETED,
        version=meta.version if ready else None,
        seq=meta.seq,
        expires_at=meta.expires_at,
        updated_at=meta.updated_at or meta.created_at,
    )


def current_tree_key(meta: FileRecord) -> str | None:
    """The tree key that lists ``meta`` (None once it is not live)."""
    if meta.status != FILE_READY:
        return None
    return tree_key(meta.path, meta.published_seq, meta.file_id, meta.version)


def publish(meta: FileRecord) -> None:
    """After a change to ``meta``: its head and tree key now, the rest in the background
    (the ``publish`` machine; prune when that cannot start). The change is recorded
    already: a failed write here is left to the background, not to the caller."""
    with contextlib.suppress(Unavailable):  # logged; the machine or prune publishes it
        _put_objects(meta)
    executions.start(
        get_settings().publish_state_machine_arn,
        f"publish-{meta.file_id}-{meta.seq}",
        {"file_id": meta.file_id},
    )


def settle(file_id: str) -> dict[str, Any]:
    """Make the published objects match DynamoDB and clear the file's marker (the
    ``publish_file`` Lambda and prune). Deletes stale tree keys: runs only where S3
    delete is granted."""
    check_id(file_id, "file_id")
    catalog = aws.chunk_catalog()
    for _ in range(SETTLE_ATTEMPTS):
        meta = catalog.get_file(file_id)
        if meta is None:
            return {"file_id": file_id, "settled": False, "reason": "collected"}
        if not _put_objects(meta):
            continue  # a newer change is published already: read it and publish that
        removed = _remove_stale_keys(meta)
        if catalog.clear_sync(file_id, meta.seq):
            return {
                "file_id": file_id,
                "settled": True,
                "seq": meta.seq,
                "status": meta.status,
                "stale_keys_removed": removed,
            }
        # Changed while this ran: publish the newer state too.
    raise Conflict("the file kept changing while it was published; prune retries", file_id=file_id)


def _put_objects(meta: FileRecord) -> bool:
    """PUT ``meta``'s head (never over a newer one: ``heads``) and tree key. False when
    S3 holds a newer head: ``meta`` is stale and nothing of it is written."""
    s3 = aws.client("s3")
    bucket = get_settings().bucket
    try:
        if not heads.put_head(s3, bucket, head_of(meta)):
            return False
        key = current_tree_key(meta)
        if key is not None:
            s3.put_object(Bucket=bucket, Key=key, Body=b"")
    except (ClientError, BotoCoreError, Unavailable) as exc:
        # The change stands (DynamoDB is the truth); prune publishes it through by_sync.
        logger.warning(
            "could not publish a file's objects; prune will",
            extra={"file_id": meta.file_id, "error": str(exc)},
        )
        raise Unavailable("the change was recorded but not yet published") from exc
    return True


def _remove_stale_keys(meta: FileRecord) -> int:
    """Delete every tree key of ``meta.path`` but the current one (older versions, a
    deleted file's, another file's that held the path before)."""
    s3 = aws.client("s3")
    bucket = get_settings().bucket
    keep = current_tree_key(meta)
    stale: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=tree_path_prefix(meta.path)
        ):
            for entry in page.get("Contents", []):
                parsed = parse_tree_key(entry["Key"])
                if parsed is not None and parsed.path == meta.path and entry["Key"] != keep:
                    stale.append(entry["Key"])
        for start in range(0, len(stale), 1000):
            answer = s3.delete_objects(
                Bucket=bucket,
                Delete={
                    "Objects": [{"Key": key} for key in stale[start : start + 1000]],
                    "Quiet": True,
                },
            )
            # S3 answers 200 and lists the keys it could not delete (Quiet lists only those).
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise Unavailable(
                    f"could not delete {len(answer['Errors'])} stale tree keys "
                    f"({first.get('Code')}: {first.get('Key')})"
                )
    except (ClientError, BotoCoreError) as exc:
        raise Unavailable("could not tidy a path's tree keys") from exc
    return len(stale)
