"""``ChunkCatalog``: the chunks table (files, chunks, replicas, uploads, edge work)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fsnode_core.errors import InvalidInput, NotFound, Unavailable
from fsnode_core.models import (
    FILE_READY,
    ChunkRecord,
    FileRecord,
    FileView,
    PendingUpload,
    ReplicaRecord,
    WorkItem,
    file_pk,
    node_work_pk,
)
from fsnode_core.store_errors import domain_error, error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_BATCH = 25  # BatchWriteItem's limit
_BATCH_RETRIES = 8


class ChunkCatalog:
    """File metadata, chunk hashes, replica facts and pending edge work."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        """The DynamoDB client, built on first use when none was given."""
        if self._client is None:
            self._client = boto3.client("dynamodb")
        return self._client

    # Files -------------------------------------------------------------------------

    def file_view(self, file_id: str) -> FileView:
        """Metadata, upload, chunks and replicas of a file in ONE paginated Query."""
        view = FileView()
        paginator = self.client.get_paginator("query")
        try:
            pages = paginator.paginate(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": file_pk(file_id)}},
                ConsistentRead=True,
            )
            for page in pages:
                for item in page.get("Items", []):
                    _add_to_view(view, item)
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "read file") from exc
        view.chunks.sort(key=lambda chunk: chunk.index)
        return view

    def get_file(self, file_id: str) -> FileRecord | None:
        """Only the metadata item (the share redirect needs nothing more)."""
        try:
            answer = self.client.get_item(
                TableName=self.table_name,
                Key={"pk": {"S": file_pk(file_id)}, "sk": {"S": "meta"}},
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "read file") from exc
        item = answer.get("Item")
        return FileRecord.from_item(item) if item else None

    def list_files(self, limit: int, next_token: str | None) -> tuple[list[FileRecord], str | None]:
        """A page of ready files and the token of the next page (None at the end).

        A filtered Scan: the table has no index by listing order, and listing is an
        operator action, not a hot path.
        """
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": "sk = :meta AND #status = :ready",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":meta": {"S": "meta"}, ":ready": {"S": FILE_READY}},
            "Limit": limit,
        }
        if next_token:
            kwargs["ExclusiveStartKey"] = _decode_token(next_token)
        try:
            answer = self.client.scan(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "list files") from exc
        files = [FileRecord.from_item(item) for item in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return files, (_encode_token(last) if last else None)

    # Uploads -----------------------------------------------------------------------

    def put_upload(self, upload: PendingUpload) -> None:
        """Record an upload in flight; its file id must be new."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=upload.to_item(),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "start upload") from exc

    def publish(self, meta: FileRecord, chunks: Sequence[ChunkRecord], upload_id: str) -> None:
        """Make a completed upload visible.

        Chunk items go first (invisible without ``meta``); then one transaction puts
        ``meta`` and consumes the upload item, so a file is visible only whole and a
        repeated ``complete`` cannot publish twice.
        """
        self._batch_put([chunk.to_item() for chunk in chunks])
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self.table_name, "Item": meta.to_item(),
                             "ConditionExpression": "attribute_not_exists(pk)"}},
                    {"Delete": {
                        "TableName": self.table_name,
                        "Key": {"pk": {"S": file_pk(meta.file_id)}, "sk": {"S": "upload"}},
                        "ConditionExpression": "upload_id = :u",
                        "ExpressionAttributeValues": {":u": {"S": upload_id}},
                    }},
                ]
            )
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "publish file") from exc

    def discard_upload(self, file_id: str, upload_id: str) -> None:
        """Forget an upload (after abort); Conflict if it was already completed or replaced."""
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key={"pk": {"S": file_pk(file_id)}, "sk": {"S": "upload"}},
                ConditionExpression="upload_id = :u",
                ExpressionAttributeValues={":u": {"S": upload_id}},
            )
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "discard upload") from exc

    # Replicas ----------------------------------------------------------------------

    def put_replica(self, replica: ReplicaRecord) -> bool:
        """Record that a node holds a chunk; False when it was already recorded."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=replica.to_item(),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise domain_error(exc, "record replica") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "record replica") from exc
        return True

    def replicas_on_node(self, node_id: str) -> list[ReplicaRecord]:
        """Every replica a node holds (the ``by_node`` index), e.g. after it died."""
        out: list[ReplicaRecord] = []
        try:
            pages = self.client.get_paginator("query").paginate(
                TableName=self.table_name,
                IndexName="by_node",
                KeyConditionExpression="node_id = :n",
                ExpressionAttributeValues={":n": {"S": node_id}},
            )
            for page in pages:
                out.extend(ReplicaRecord.from_item(item) for item in page.get("Items", []))
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "list node replicas") from exc
        return out

    # Work for edges ----------------------------------------------------------------

    def put_work(self, work: WorkItem) -> None:
        """Queue a command for an edge; the work id must be new."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=work.to_item(),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "queue work") from exc

    def pending_work(self, node_id: str, now: int | None = None) -> list[WorkItem]:
        """A node's unexpired work, oldest first (one paginated Query)."""
        moment = int(time.time()) if now is None else now
        out: list[WorkItem] = []
        try:
            pages = self.client.get_paginator("query").paginate(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :work)",
                # TTL deletion lags by hours, so expired work is filtered out here.
                FilterExpression="expires_at > :now",
                ExpressionAttributeValues={
                    ":pk": {"S": node_work_pk(node_id)},
                    ":work": {"S": "work#"},
                    ":now": {"N": str(moment)},
                },
                ConsistentRead=True,
            )
            for page in pages:
                out.extend(WorkItem.from_item(item) for item in page.get("Items", []))
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "list work") from exc
        return sorted(out, key=lambda work: (work.created_at, work.work_id))

    def take_work(self, node_id: str, work_id: str) -> WorkItem:
        """Remove and return a node's work item: exactly one report can take it."""
        try:
            answer = self.client.delete_item(
                TableName=self.table_name,
                Key={"pk": {"S": node_work_pk(node_id)}, "sk": {"S": f"work#{work_id}"}},
                ConditionExpression="attribute_exists(pk)",
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise NotFound("no such work for this node (done, expired or never queued)",
                               work_id=work_id) from exc
            raise domain_error(exc, "take work") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "take work") from exc
        return WorkItem.from_item(answer["Attributes"])

    # Helpers -----------------------------------------------------------------------

    def _batch_put(self, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), _BATCH):
            pending: list[dict[str, Any]] = [
                {"PutRequest": {"Item": item}} for item in items[start:start + _BATCH]
            ]
            for attempt in range(_BATCH_RETRIES):
                try:
                    answer = self.client.batch_write_item(
                        RequestItems={self.table_name: pending}  # type: ignore[dict-item]
                    )
                except (ClientError, BotoCoreError) as exc:
                    raise domain_error(exc, "write chunks") from exc
                pending = answer.get("UnprocessedItems", {}).get(self.table_name, [])  # type: ignore[assignment]
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))  # throttled: back off, then resend
            else:
                raise Unavailable("write chunks failed: the table kept throttling")


def _add_to_view(view: FileView, item: dict[str, Any]) -> None:
    sk = item["sk"]["S"]
    if sk == "meta":
        view.meta = FileRecord.from_item(item)
    elif sk == "upload":
        view.upload = PendingUpload.from_item(item)
    elif sk.startswith("chunk#"):
        view.chunks.append(ChunkRecord.from_item(item))
    elif sk.startswith("replica#"):
        view.replicas.append(ReplicaRecord.from_item(item))


def _encode_token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def _decode_token(token: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(key, dict) or set(key) != {"pk", "sk"}:
            raise ValueError("unexpected key shape")
        if not all(isinstance(v, dict) and set(v) == {"S"} for v in key.values()):
            raise ValueError("unexpected key values")
    except (ValueError, TypeError) as exc:
        raise InvalidInput("next_token is not valid", field="next_token") from exc
    return key


