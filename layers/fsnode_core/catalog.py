"""``ChunkCatalog``: the chunks table (files, paths, uploads, replicas, edge work, hashing
results), built from one store per concern over the same table."""

from __future__ import annotations

import time
from typing import Any

from fsnode_core.catalog_base import item_key
from fsnode_core.catalog_file_items import meta_record
from fsnode_core.catalog_files import FileStore
from fsnode_core.catalog_lifecycle import FileLifecycleStore
from fsnode_core.catalog_replicas import ReplicaStore
from fsnode_core.catalog_uploads import UploadStore
from fsnode_core.models import FILE_DELETING, file_pk, retired_sk
from fsnode_core.replica_blocks import replica_prefix

# Digests one hashing batch item holds: 4096 x 32 raw bytes is 128 KiB, far under the
# 400 KB item limit (a 50,000-chunk file is 13 items).
HASH_BATCH_CHUNKS = 4096
_HASH_BATCH_TTL = 24 * 3600


def hashes_prefix(version: str) -> str:
    return f"hashes#{version}#"


class ChunkCatalog(FileStore, FileLifecycleStore, UploadStore, ReplicaStore):
    """File metadata, path claims, uploads, replica facts, edge work and the results of
    hashing jobs, in one DynamoDB table (layout: ``fsnode_core.models``)."""

    # Hashing jobs -------------------------------------------------------------------

    def put_hash_batch(self, file_id: str, version: str, batch: int, digests: bytes) -> None:
        """One batch's raw SHA-256 digests (32 bytes per chunk, in order); kept a day."""
        self._call(
            "record hashes",
            self.client.put_item,
            TableName=self.table_name,
            Item={
                "pk": {"S": file_pk(file_id)},
                "sk": {"S": f"{hashes_prefix(version)}{batch:06d}"},
                "digests": {"B": digests},
                "expires_at": {"N": str(int(time.time()) + _HASH_BATCH_TTL)},
            },
        )

    def hash_batches(self, file_id: str, version: str) -> dict[int, bytes]:
        """Every recorded batch of a version's hashing job, by batch number."""
        items = self._query_all(
            "read hashes",
            KeyConditionExpression="pk = :pk AND begins_with(sk, :h)",
            ExpressionAttributeValues={
                ":pk": {"S": file_pk(file_id)},
                ":h": {"S": hashes_prefix(version)},
            },
            ConsistentRead=True,
        )
        return {
            int(item["sk"]["S"].rsplit("#", 1)[1]): bytes(item["digests"]["B"]) for item in items
        }

    def delete_hash_batches(self, file_id: str, version: str, batches: int) -> None:
        self._batch_delete(
            [
                {"pk": {"S": file_pk(file_id)}, "sk": {"S": f"{hashes_prefix(version)}{batch:06d}"}}
                for batch in range(batches)
            ]
        )

    # Collection ---------------------------------------------------------------------

    def delete_version_items(self, file_id: str, version: str) -> int:
        """Delete a version's replica, upload, hashing and retirement items, then its
        tombstone ``meta`` item last (only a tombstone of this version: a live file's
        ``meta`` is never collected). Returns the items deleted."""
        items = self._query_all(
            "read version items",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": file_pk(file_id)}},
            ConsistentRead=True,
        )
        keys: list[dict[str, Any]] = []
        meta = None
        for item in items:
            sk = item["sk"]["S"]
            if sk == "meta":
                meta = meta_record(item)
            elif (
                sk.startswith((replica_prefix(version), hashes_prefix(version)))
                or sk == retired_sk(version)
                or (sk == "upload" and item.get("version", {}).get("S") == version)
            ):
                keys.append(item_key(item))
        self._batch_delete(keys)
        deleted = len(keys)
        if (
            meta is not None
            and meta.version == version
            and meta.status == FILE_DELETING
            and self._delete_if(
                {"pk": {"S": file_pk(file_id)}, "sk": {"S": "meta"}},
                "version = :v AND #status = :deleting",
                {":v": {"S": version}, ":deleting": {"S": FILE_DELETING}},
                "delete file",
                {"#status": "status"},
            )
        ):
            deleted += 1
        return deleted
