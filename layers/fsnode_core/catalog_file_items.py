"""The items of a file in the chunks table, encoded and decoded: ``meta`` (with its
expiry and ``by_sync`` marker), retired versions and the open upload; and the condition
that ``meta`` is still what a writer read."""

from __future__ import annotations

from typing import Any

from fsnode_core.catalog_base import COLLECT_PK, VERSIONS_COLLECT_PK, collect_sk, sync_keys
from fsnode_core.models import FILE_READY, FileRecord, PendingUpload, RetiredVersion

# A file's expiry is stored under its own name, never as ``expires_at``: that is the
# table's TTL attribute, and DynamoDB deleting an expired ``meta`` item by itself would
# leave its replicas and S3 objects with nothing pointing at them.
FILE_EXPIRY = "file_expires_at"


def unchanged_condition(current: FileRecord) -> dict[str, Any]:
    """A write's condition: ``meta`` is still exactly the ready version the caller read."""
    return {
        "ConditionExpression": "version = :v AND #status = :ready AND seq = :seq",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {
            ":v": {"S": current.version},
            ":ready": {"S": FILE_READY},
            ":seq": {"N": str(current.seq)},
        },
    }


def meta_item(meta: FileRecord) -> dict[str, Any]:
    """A ``meta`` item: the expiry kept apart from the TTL attribute and indexed, and
    the ``by_sync`` marker of its ``seq``."""
    item = dict(meta.to_item())
    item.pop("expires_at", None)
    if meta.expires_at is not None:
        item[FILE_EXPIRY] = {"N": str(meta.expires_at)}
        item["collect_pk"] = {"S": COLLECT_PK}
        item["collect_sk"] = {"S": collect_sk(meta.expires_at, meta.file_id)}
    item.update(sync_keys(meta.file_id, meta.seq))
    return item


def meta_record(item: dict[str, Any]) -> FileRecord:
    data = {k: v for k, v in item.items() if k != "expires_at"}
    if FILE_EXPIRY in data:
        data["expires_at"] = data.pop(FILE_EXPIRY)
    return FileRecord.from_item(data)


def retired_item(retired: RetiredVersion) -> dict[str, Any]:
    item = dict(retired.to_item())
    item["collect_pk"] = {"S": VERSIONS_COLLECT_PK}
    item["collect_sk"] = {"S": collect_sk(retired.due, retired.file_id, retired.version)}
    return item


def upload_record(item: dict[str, Any]) -> PendingUpload:
    data = dict(item)
    if "upload_expires_at" in data:
        data["expires_at"] = data.pop("upload_expires_at")
    return PendingUpload.from_item(data)
