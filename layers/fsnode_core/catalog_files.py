"""Files in the chunks table: ``meta`` items, path claims, listing by path, publishing
a version, tombstones and expiry, and the ``by_sync`` marker of published objects.

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
    cancel_reasons,
    collect_sk,
    decode_token,
    encode_token,
    sync_keys,
)
from fsnode_core.errors import Conflict, InvalidInput
from fsnode_core.models import (
    FILE_DELETING,
    FILE_READY,
    LISTING_PK,
    FileRecord,
    FileView,
    PathClaim,
    PendingUpload,
    RetiredVersion,
    file_pk,
    path_pk,
)
from fsnode_core.replica_blocks import ReplicaBlock

LISTING_INDEX = "by_listing"
_LISTING_KEY = {"pk", "sk", "list_pk", "list_sk"}
# A file's expiry is stored under its own name, never as ``expires_at``: that is the
# table's TTL attribute, and DynamoDB deleting an expired ``meta`` item by itself would
# leave its replicas and S3 objects with nothing pointing at them.
FILE_EXPIRY = "file_expires_at"
_OPEN_UPLOAD = "upload_id = :u AND (attribute_not_exists(#state) OR #state = :open)"


class FileStore(CatalogBase):
    """The ``meta`` items and path claims of the chunks table."""

    def get_file(self, file_id: str) -> FileRecord | None:
        """Only the metadata item (strongly consistent)."""
        item = self._get({"pk": {"S": file_pk(file_id)}, "sk": {"S": "meta"}}, "read file")
        return meta_record(item) if item else None

    def file_view(self, file_id: str) -> FileView:
        """Metadata, upload and replicas of a file in ONE paginated Query."""
        view = FileView()
        for item in self._query_all(
            "read file",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": file_pk(file_id)}},
            ConsistentRead=True,
        ):
            sk = item["sk"]["S"]
            if sk == "meta":
                view.meta = meta_record(item)
            elif sk == "upload":
                view.upload = upload_record(item)
            elif sk.startswith("replica#"):
                view.replica_blocks.append(ReplicaBlock.from_item(item))
        return view

    def list_files(
        self, prefix: str, limit: int, next_token: str | None
    ) -> tuple[list[FileRecord], str | None]:
        """A page of ready files whose path starts with ``prefix``, in path order, and the
        next page's token (None at the end): a Query of the sparse ``by_listing`` index."""
        values: dict[str, Any] = {":files": {"S": LISTING_PK}}
        condition = "list_pk = :files"
        if prefix:
            condition += " AND begins_with(list_sk, :prefix)"
            values[":prefix"] = {"S": prefix}
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": LISTING_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "Limit": limit,
        }
        if next_token:
            start = decode_token(next_token, _LISTING_KEY)
            if prefix and not start["list_sk"]["S"].startswith(prefix):
                raise InvalidInput("next_token belongs to another listing", field="next_token")
            kwargs["ExclusiveStartKey"] = start
        answer = self._call("list files", self.client.query, **kwargs)
        files = [meta_record(item) for item in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return files, (encode_token(last) if last else None)

    # Paths --------------------------------------------------------------------------

    def get_claim(self, path: str) -> PathClaim | None:
        item = self._get({"pk": {"S": path_pk(path)}, "sk": {"S": "claim"}}, "read path")
        return PathClaim.from_item(item) if item else None

    def claim_path(self, claim: PathClaim, *, replacing: str | None = None) -> bool:
        """Claim a free path (or one ``replacing`` still holds); False when it is taken."""
        condition = "attribute_not_exists(pk)"
        values: dict[str, Any] = {}
        if replacing is not None:
            condition += " OR file_id = :old"
            values[":old"] = {"S": replacing}
        refused = self._transact(
            [
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": claim.to_item(),
                        "ConditionExpression": condition,
                        **({"ExpressionAttributeValues": values} if values else {}),
                    }
                }
            ],
            "claim path",
        )
        return refused is None

    def release_claim(self, path: str, file_id: str) -> bool:
        """Forget ``file_id``'s claim on ``path`` (not another file's); False if not held."""
        return self._delete_if(
            {"pk": {"S": path_pk(path)}, "sk": {"S": "claim"}},
            "file_id = :f",
            {":f": {"S": file_id}},
            "release path",
        )

    # Publishing ---------------------------------------------------------------------

    def publish_version(
        self,
        meta: FileRecord,
        upload: PendingUpload,
        *,
        current: FileRecord | None,
        retired: RetiredVersion | None,
    ) -> None:
        """Make a completed upload visible in ONE transaction: ``meta`` switches to it
        (a new file: only if none exists; a new version: only if ``current`` is still
        exactly what the caller read), the open upload item is consumed (a repeated
        ``complete`` cannot publish twice), the path must still be this file's, and the
        replaced version gets its collection entry. Conflict names what moved."""
        put: dict[str, Any] = {"TableName": self.table_name, "Item": meta_item(meta)}
        if current is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put.update(_unchanged(current))
        actions: list[dict[str, Any]] = [
            {"Put": put},
            {
                "Delete": {
                    "TableName": self.table_name,
                    "Key": {"pk": {"S": file_pk(meta.file_id)}, "sk": {"S": "upload"}},
                    "ConditionExpression": _OPEN_UPLOAD,
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": {
                        ":u": {"S": upload.upload_id},
                        ":open": {"S": "open"},
                    },
                }
            },
            {
                "ConditionCheck": {
                    "TableName": self.table_name,
                    "Key": {"pk": {"S": path_pk(meta.path)}, "sk": {"S": "claim"}},
                    "ConditionExpression": "file_id = :f",
                    "ExpressionAttributeValues": {":f": {"S": meta.file_id}},
                }
            },
        ]
        if retired is not None:
            actions.append({"Put": {"TableName": self.table_name, "Item": retired_item(retired)}})
        refused = self._transact(actions, "publish file")
        if refused is not None:
            reasons = cancel_reasons(refused)
            what = [
                "the file changed",
                "the upload is not open",
                "the path belongs to another file",
            ]
            moved = [
                what[i] for i, code in enumerate(reasons[:3]) if code == "ConditionalCheckFailed"
            ] or ["a write raced this one"]
            raise Conflict(
                f"publish refused: {', '.join(moved)}", file_id=meta.file_id, moved=moved
            )

    def put_import(self, meta: FileRecord, *, stale_claim: str | None = None) -> None:
        """Publish an imported object: ``meta`` (a new file id) and its path claim (free,
        ours, or ``stale_claim``'s: a file that never became visible) in one transaction.
        Conflict when the file exists or the path is another file's."""
        values = {":me": {"S": meta.file_id}, ":stale": {"S": stale_claim or meta.file_id}}
        refused = self._transact(
            [
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": meta_item(meta),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": PathClaim(meta.path, meta.file_id, meta.created_at).to_item(),
                        "ConditionExpression": (
                            "attribute_not_exists(pk) OR file_id = :me OR file_id = :stale"
                        ),
                        "ExpressionAttributeValues": values,
                    }
                },
            ],
            "import file",
        )
        if refused is not None:
            first = cancel_reasons(refused)[:1] == ["ConditionalCheckFailed"]
            raise Conflict(
                "the file exists already" if first else "the path belongs to another file",
                file_id=meta.file_id,
                path_taken=not first,
            )

    def tombstone(self, current: FileRecord, *, seq: int, due: int, now: int) -> FileRecord:
        """Tombstone the current version (status ``deleting``, out of the listing, into
        collection at ``due``) and free its path, in one transaction conditional on
        ``current`` being what the caller read (Conflict otherwise)."""
        deleted = replace(current, status=FILE_DELETING, seq=seq, updated_at=now)
        item = meta_item(deleted)
        item["collect_pk"] = {"S": COLLECT_PK}
        item["collect_sk"] = {"S": collect_sk(due, current.file_id)}
        put = {"TableName": self.table_name, "Item": item, **_unchanged(current)}
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
                        **_unchanged(current),
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


def _unchanged(current: FileRecord) -> dict[str, Any]:
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
