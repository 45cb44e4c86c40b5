"""A published file's life in the chunks table: tombstones, expiry, its import's
content digest, the ``by_sync`` marker, and collection of what is due.

Every change the published S3 objects reflect (a new version, a tombstone, an expiry)
writes the ``meta`` item with a new ``seq`` (conditional on the ``seq`` read, so two
writers never pass each other) and the ``by_sync`` marker; the writer then publishes
(``chalicelib.publisher``) and clears the marker only if ``seq`` is still its own.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fsnode_core.catalog_base import (
    COLLECT_PK,
    SYNC_INDEX,
    SYNC_PK,
    VERSIONS_COLLECT_PK,
    CatalogBase,
    collect_sk,
)
from fsnode_core.catalog_file_items import (
    meta_item,
    meta_record,
    retired_item,
    unchanged_condition,
)
from fsnode_core.errors import Conflict
from fsnode_core.models import FILE_DELETING, FileRecord, RetiredVersion, file_pk, path_pk


class FileLifecycleStore(CatalogBase):
    """Changes to published ``meta`` items, and what is due for collection."""

    def tombstone(self, current: FileRecord, *, seq: int, due: int, now: int) -> FileRecord:
        """Tombstone the current version (status ``deleting``, out of the listing, into
        collection at ``due``) and free its path, in one transaction conditional on
        ``current`` being what the caller read (Conflict otherwise)."""
        deleted = replace(current, status=FILE_DELETING, seq=seq, updated_at=now)
        item = meta_item(deleted)
        item["collect_pk"] = {"S": COLLECT_PK}
        item["collect_sk"] = {"S": collect_sk(due, current.file_id)}
        put = {"TableName": self.table_name, "Item": item, **unchanged_condition(current)}
        refused = self._transact(
            [
                {"Put": put},
                {
                    "Delete": {
                        "TableName": self.table_name,
                        "Key": {"pk": {"S": path_pk(current.path)}, "sk": {"S": "claim"}},
                        "ConditionExpression": "attribute_not_exists(pk) OR file_id = :f",
                        "ExpressionAttributeValues": {":f": {"S": current.file_id}},
                    }
                },
            ],
            "tombstone file",
        )
        if refused is not None:
            raise Conflict("the file changed while deleting; retry", file_id=current.file_id)
        return deleted

    def set_expiry(
        self, current: FileRecord, expires_at: int | None, *, seq: int, now: int
    ) -> FileRecord:
        """Give the current ready version an expiry, or clear it (None), conditional on
        ``current`` being what the caller read (Conflict otherwise)."""
        changed = replace(current, expires_at=expires_at, seq=seq, updated_at=now)
        refused = self._transact(
            [
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": meta_item(changed),
                        **unchanged_condition(current),
                    }
                }
            ],
            "set file expiry",
        )
        if refused is not None:
            raise Conflict(
                "the file version is not current and ready",
                file_id=current.file_id,
                version=current.version,
            )
        return changed

    def set_chunks_sha256(self, file_id: str, version: str, digest: str) -> bool:
        """Record an import's ``chunks_sha256`` once its hashes are known (False when the
        file moved on to another version meanwhile)."""
        return self._update_if(
            file_id,
            "SET chunks_sha256 = :d",
            "version = :v",
            {":d": {"S": digest}, ":v": {"S": version}},
            "record hashes",
        )

    # The by_sync marker ---------------------------------------------------------------

    def clear_sync(self, file_id: str, seq: int) -> bool:
        """Take the file out of ``by_sync`` if nothing changed since ``seq`` was published
        (False: a newer change is still to be published, by its writer or by prune)."""
        return self._update_if(
            file_id,
            "REMOVE sync_pk, sync_sk",
            "seq = :s",
            {":s": {"N": str(seq)}},
            "clear sync marker",
        )

    def unsynced(self, before_seq: int, limit: int) -> list[str]:
        """Ids of files whose last change (older than ``before_seq``) may not be
        published yet: a Query of ``by_sync``."""
        answer = self._call(
            "find unsynced files",
            self.client.query,
            TableName=self.table_name,
            IndexName=SYNC_INDEX,
            KeyConditionExpression="sync_pk = :s AND sync_sk < :before",
            ExpressionAttributeValues={
                ":s": {"S": SYNC_PK},
                ":before": {"S": f"{before_seq:016d}"},
            },
            Limit=limit,
        )
        return [item["sync_sk"]["S"].split("#", 1)[1] for item in answer.get("Items", [])]

    # Collection ---------------------------------------------------------------------

    def files_to_collect(self, now: int) -> list[FileRecord]:
        """``meta`` items due: tombstones past their grace, files past their expiry (a
        Query of the sparse ``by_collect`` index up to ``now``)."""
        return [
            meta_record(item)
            for item in self._due_for_collection(COLLECT_PK, now, "find files to collect")
        ]

    def versions_to_collect(self, now: int) -> list[RetiredVersion]:
        """Retired versions past their grace period."""
        items = self._due_for_collection(VERSIONS_COLLECT_PK, now, "find versions to collect")
        return [RetiredVersion.from_item(item) for item in items]

    def put_retired(self, retired: RetiredVersion) -> None:
        self._call(
            "retire version",
            self.client.put_item,
            TableName=self.table_name,
            Item=retired_item(retired),
        )

    def _update_if(
        self, file_id: str, update: str, condition: str, values: dict[str, Any], action: str
    ) -> bool:
        refused = self._transact(
            [
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": {"pk": {"S": file_pk(file_id)}, "sk": {"S": "meta"}},
                        "UpdateExpression": update,
                        "ConditionExpression": condition,
                        "ExpressionAttributeValues": values,
                    }
                }
            ],
            action,
        )
        return refused is None
