"""Files in the chunks table: reading ``meta`` items, path claims, listing by path, and
publishing a version or an import. What happens to a published file after that
(tombstones, expiry, the ``by_sync`` marker, collection) is ``catalog_lifecycle``'s;
the items' codecs are ``catalog_file_items``'.
"""

from __future__ import annotations

from typing import Any

from fsnode_core.catalog_base import (
    CatalogBase,
    cancel_reasons,
    decode_token,
    encode_token,
)
from fsnode_core.catalog_file_items import (
    meta_item,
    meta_record,
    retired_item,
    unchanged_condition,
    upload_record,
)
from fsnode_core.errors import Conflict, InvalidInput
from fsnode_core.models import (
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
            put.update(unchanged_condition(current))
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
