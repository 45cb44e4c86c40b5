"""Uploads in the chunks table: the small ``upload`` item of a multipart upload in
flight (its declared hashes are in S3), its states, and the sweep's index entries."""

from __future__ import annotations

from typing import Any

from fsnode_core.catalog_base import UPLOADS_COLLECT_PK, CatalogBase, collect_sk
from fsnode_core.catalog_file_items import upload_record
from fsnode_core.models import (
    UPLOAD_DISCARDING,
    UPLOAD_OPEN,
    PendingUpload,
    file_pk,
)
from fsnode_core.store_errors import aws_errors

# An upload's deadline is not the TTL attribute either: DynamoDB dropping an ``upload``
# item by itself would leave its S3 upload with nothing pointing at it.
_UPLOAD_DEADLINE = "upload_expires_at"


class UploadStore(CatalogBase):
    """One ``upload`` item per file: at most one upload in flight."""

    def put_upload(self, upload: PendingUpload) -> None:
        """Record an upload being declared: one per file; Conflict while another exists
        (the caller discards a stale one first)."""
        self._call(
            "start upload",
            self.client.put_item,
            TableName=self.table_name,
            Item=upload_item(upload),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def open_upload(self, upload: PendingUpload) -> None:
        """Its declaration is in S3: open it for parts."""
        self._set_upload_state(upload, UPLOAD_OPEN, expected="declaring", action="open upload")

    def get_upload(self, file_id: str) -> PendingUpload | None:
        """The file's upload in flight (one GetItem)."""
        item = self._get({"pk": {"S": file_pk(file_id)}, "sk": {"S": "upload"}}, "read upload")
        return upload_record(item) if item else None

    def touch_upload(self, upload: PendingUpload, urls_until: int) -> None:
        """Note that part URLs were handed out until ``urls_until`` (the upload is not
        stale before then); Conflict when the upload is no longer open."""
        self._call(
            "hand out part URLs",
            self.client.update_item,
            TableName=self.table_name,
            Key={"pk": {"S": file_pk(upload.file_id)}, "sk": {"S": "upload"}},
            UpdateExpression="SET urls_until = :t",
            ConditionExpression="upload_id = :u AND #state = :open",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":t": {"N": str(urls_until)},
                ":u": {"S": upload.upload_id},
                ":open": {"S": UPLOAD_OPEN},
            },
        )

    def discard_upload(self, upload: PendingUpload, *, stale_at: int | None = None) -> None:
        """Forget an upload: marked ``discarding`` first, conditional on its upload id
        (and, with ``stale_at``, on every part URL it handed out having expired), so
        ``complete`` can no longer publish it; Conflict (nothing changed) when it was
        completed, replaced or handed out URLs meanwhile. Then the item goes. What it
        left in S3 (its declaration, parts) is the caller's to collect."""
        self._set_upload_state(
            upload, UPLOAD_DISCARDING, expected=None, action="discard upload", stale_at=stale_at
        )
        self._delete_if(
            {"pk": {"S": file_pk(upload.file_id)}, "sk": {"S": "upload"}},
            "upload_id = :u",
            {":u": {"S": upload.upload_id}},
            "discard upload",
        )

    def uploads_due(self, now: int) -> list[PendingUpload]:
        """Uploads whose time to complete is up (a Query of ``by_collect``'s uploads)."""
        items = self._due_for_collection(UPLOADS_COLLECT_PK, now, "find abandoned uploads")
        return [upload_record(item) for item in items]

    def _set_upload_state(
        self,
        upload: PendingUpload,
        state: str,
        *,
        expected: str | None,
        action: str,
        stale_at: int | None = None,
    ) -> None:
        condition = "upload_id = :u"
        values: dict[str, Any] = {":u": {"S": upload.upload_id}, ":s": {"S": state}}
        if expected is not None:
            condition += " AND #state = :expected"
            values[":expected"] = {"S": expected}
        if stale_at is not None:
            condition += " AND urls_until < :stale"
            values[":stale"] = {"N": str(stale_at)}
        with aws_errors(action):
            self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": file_pk(upload.file_id)}, "sk": {"S": "upload"}},
                UpdateExpression="SET #state = :s",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values,
            )
        upload.state = state


def upload_item(upload: PendingUpload) -> dict[str, Any]:
    """An ``upload`` item: its deadline kept apart from the TTL attribute, and in the
    collection index's uploads partition."""
    item = dict(upload.to_item())
    item.pop("expires_at", None)
    item[_UPLOAD_DEADLINE] = {"N": str(upload.expires_at)}
    item["collect_pk"] = {"S": UPLOADS_COLLECT_PK}
    item["collect_sk"] = {"S": collect_sk(upload.expires_at, upload.file_id)}
    return item
