"""``ChunkCatalog``: the chunks table (files, chunks, replicas, uploads, edge work)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from fsnode_core.errors import Conflict, Gone, InvalidInput, NotFound, Unavailable
from fsnode_core.models import (
    FILE_DELETING,
    FILE_READY,
    LISTING_PK,
    ChunkRecord,
    FileRecord,
    FileView,
    PendingUpload,
    ReplicaRecord,
    WorkItem,
    chunk_sk,
    file_pk,
    node_work_pk,
)
from fsnode_core.store_base import DynamoStore
from fsnode_core.store_errors import domain_error, error_code

if TYPE_CHECKING:
    pass

_BATCH = 25  # BatchWriteItem's limit
LISTING_INDEX = "by_listing"
_LISTING_KEY = {"pk", "sk", "list_pk", "list_sk"}
_BATCH_RETRIES = 8
# The sparse ``by_collect`` index holds only ``meta`` items that garbage collection will
# want: tombstoned ones (due at once) and ones with an expiry (due then), sorted by when.
COLLECT_INDEX = "by_collect"
COLLECT_PK = "collect"
# A file's expiry is stored under its own name, never as ``expires_at``: that is the
# table's TTL attribute, and DynamoDB deleting an expired ``meta`` item by itself would
# leave its chunks, replicas and S3 object with nothing pointing at them.
_FILE_EXPIRY = "file_expires_at"


class ChunkCatalog(DynamoStore):
    """File metadata, chunk hashes, replica facts and pending edge work."""

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
        return _meta_record(item) if item else None

    def list_files(self, limit: int, next_token: str | None) -> tuple[list[FileRecord], str | None]:
        """A page of ready files, oldest first, and the next page's token (None at the end).

        A Query of the sparse ``by_listing`` index, which holds only ready ``meta``
        items: every page is full until the last, never an empty page with a token.
        """
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": LISTING_INDEX,
            "KeyConditionExpression": "list_pk = :files",
            "ExpressionAttributeValues": {":files": {"S": LISTING_PK}},
            "Limit": limit,
        }
        if next_token:
            kwargs["ExclusiveStartKey"] = _decode_token(next_token)
        try:
            answer = self.client.query(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "list files") from exc
        files = [_meta_record(item) for item in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return files, (_encode_token(last) if last else None)

    # Uploads -----------------------------------------------------------------------

    def put_upload(self, upload: PendingUpload, *, stale_before: int | None = None) -> None:
        """Record an upload in flight: one per file; Conflict while another is in flight.

        An upload item created before ``stale_before`` (its part URLs have expired) may
        be replaced, so an abandoned overwrite does not block the file for days; its
        ``complete`` then fails on the upload id.
        """
        kwargs: dict[str, Any] = {"TableName": self.table_name, "Item": upload.to_item(),
                                  "ConditionExpression": "attribute_not_exists(pk)"}
        if stale_before is not None:
            kwargs["ConditionExpression"] += " OR created_at < :stale"
            kwargs["ExpressionAttributeValues"] = {":stale": {"N": str(stale_before)}}
        try:
            self.client.put_item(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "start upload") from exc

    def publish(self, meta: FileRecord, chunks: Sequence[ChunkRecord], upload_id: str,
                *, replaces: str | None = None, replaced_expiry: int | None = None) -> None:
        """Make a completed upload visible.

        Chunk items go first (invisible without ``meta``, keyed by their own version);
        then one transaction puts ``meta`` and consumes the upload item, so a file is
        visible only whole and a repeated ``complete`` cannot publish twice. A new
        version (``replaces``) switches ``meta`` only if ``replaces`` is still current
        and ready, with the expiry the caller saw (``replaced_expiry``, which the new
        version may have carried over): readers see the old version or the new one, never
        a mix, and an expiry changed meanwhile is not lost (Conflict: read and retry).
        """
        self._batch_put([chunk.to_item() for chunk in chunks])
        put: Any = {"TableName": self.table_name, "Item": _meta_item(meta),
                               "ConditionExpression": "attribute_not_exists(pk)"}
        if replaces is not None:
            put["ConditionExpression"] = "version = :prev AND #status = :ready AND "
            put["ExpressionAttributeNames"] = {"#status": "status"}
            put["ExpressionAttributeValues"] = {":prev": {"S": replaces},
                                                ":ready": {"S": FILE_READY}}
            if replaced_expiry is None:
                put["ConditionExpression"] += f"attribute_not_exists({_FILE_EXPIRY})"
            else:
                put["ConditionExpression"] += f"{_FILE_EXPIRY} = :seen"
                put["ExpressionAttributeValues"][":seen"] = {"N": str(replaced_expiry)}
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {"Put": put},
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

    def put_import(self, meta: FileRecord, chunks: Sequence[ChunkRecord]) -> None:
        """Publish an imported object: chunk items first, then ``meta`` (a new file id)."""
        self._batch_put([chunk.to_item() for chunk in chunks])
        try:
            self.client.put_item(TableName=self.table_name, Item=_meta_item(meta),
                                 ConditionExpression="attribute_not_exists(pk)")
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "import file") from exc

    def record_chunk_sha256(self, file_id: str, version: str, index: int,
                            sha256: str) -> bool:
        """Set an unknown chunk hash; True if set now, False if it already had this one.

        NotFound when the chunk does not exist; Conflict when a different hash is known.
        """
        key = {"pk": {"S": file_pk(file_id)}, "sk": {"S": chunk_sk(index, version)}}
        try:
            self.client.update_item(
                TableName=self.table_name, Key=key, UpdateExpression="SET sha256 = :h",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(sha256)",
                ExpressionAttributeValues={":h": {"S": sha256}},
            )
            return True
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise domain_error(exc, "record chunk hash") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "record chunk hash") from exc
        try:
            item = self.client.get_item(TableName=self.table_name, Key=key,
                                        ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "read chunk") from exc
        if item is None:
            raise NotFound("no such chunk", file_id=file_id, version=version, index=index)
        known = ChunkRecord.from_item(item).sha256
        if known != sha256:
            raise Conflict("a different SHA-256 is already recorded for this chunk",
                           file_id=file_id, version=version, index=index)
        return False

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

    # Lifecycle (replication, prune, garbage collection) ------------------------------

    def put_replica_if_current(self, replica: ReplicaRecord) -> bool:
        """Record a verified copy only while its file version is current and ready.

        One transaction checks the ``meta`` item and puts the replica, so a copy that
        lands after a delete or an overwrite never points at data that is going away.
        False when the replica was already recorded; Gone when the version is not current.
        """
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {"ConditionCheck": {
                        "TableName": self.table_name,
                        "Key": {"pk": {"S": file_pk(replica.file_id)}, "sk": {"S": "meta"}},
                        "ConditionExpression": "#status = :ready AND version = :v",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {":ready": {"S": FILE_READY},
                                                      ":v": {"S": replica.version}},
                    }},
                    {"Put": {"TableName": self.table_name, "Item": replica.to_item(),
                             "ConditionExpression": "attribute_not_exists(pk)"}},
                ]
            )
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                reasons = [r.get("Code", "None") for r in
                           exc.response.get("CancellationReasons", [])]
                if reasons[:1] == ["ConditionalCheckFailed"]:
                    raise Gone("file version is no longer current",
                               file_id=replica.file_id) from exc
                if reasons[1:2] == ["ConditionalCheckFailed"]:
                    return False
            raise domain_error(exc, "record replica") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "record replica") from exc
        return True

    def delete_replicas(self, replicas: Sequence[ReplicaRecord]) -> None:
        """Forget replica facts (a dead node's, or an evicted file's); idempotent."""
        self._batch_delete([
            _item_key(r.to_item()) for r in replicas
        ])

    def mark_deleting(self, file_id: str, version: str) -> FileRecord | None:
        """Tombstone a file version (status ``deleting``); None when no such version exists.

        Conditional on the version, so a tombstone never lands on a newer version.
        """
        try:
            answer = self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": file_pk(file_id)}, "sk": {"S": "meta"}},
                # Out of the listing index at once (a tombstone is never listed) and
                # into the collection index, due now.
                UpdateExpression=("SET #status = :deleting, collect_pk = :c, collect_sk = :due "
                                  "REMOVE list_pk, list_sk"),
                ConditionExpression="attribute_exists(pk) AND version = :v",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":deleting": {"S": FILE_DELETING},
                                           ":v": {"S": version},
                                           ":c": {"S": COLLECT_PK},
                                           ":due": {"S": _collect_sk(file_id, 0)}},
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise domain_error(exc, "tombstone file") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "tombstone file") from exc
        return _meta_record(answer["Attributes"])

    def set_expiry(self, file_id: str, version: str, expires_at: int | None) -> FileRecord:
        """Give a ready file version an expiry, or clear it (None); prune collects the file
        once its expiry has passed.

        Conditional on the version being current and ready: NotFound for an unknown
        file, Conflict when the version changed or is being deleted.
        """
        values: dict[str, Any] = {":v": {"S": version}, ":ready": {"S": FILE_READY}}
        if expires_at is None:
            # A ready file is in the collection index only because of its expiry.
            update = f"REMOVE {_FILE_EXPIRY}, collect_pk, collect_sk"
        else:
            update = f"SET {_FILE_EXPIRY} = :at, collect_pk = :c, collect_sk = :due"
            values.update({":at": {"N": str(expires_at)}, ":c": {"S": COLLECT_PK},
                           ":due": {"S": _collect_sk(file_id, expires_at)}})
        try:
            answer = self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": file_pk(file_id)}, "sk": {"S": "meta"}},
                UpdateExpression=update,
                ConditionExpression="version = :v AND #status = :ready",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                if self.get_file(file_id) is None:
                    raise NotFound("no such file", file_id=file_id) from exc
                raise Conflict("the file version is not current and ready",
                               file_id=file_id, version=version) from exc
            raise domain_error(exc, "set file expiry") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "set file expiry") from exc
        return _meta_record(answer["Attributes"])

    def delete_version_items(self, file_id: str, version: str) -> int:
        """Delete a version's chunk, replica and upload items, then its ``meta`` item last.

        ``meta`` goes last and only if it still names this version, so the tombstone
        stays visible until nothing else of the version is left. Returns items deleted.
        """
        view = self.file_view(file_id)
        keys = [{"pk": {"S": file_pk(file_id)}, "sk": {"S": chunk_sk(c.index, c.version)}}
                for c in view.chunks if c.version == version]
        keys += [_item_key(r.to_item()) for r in view.replicas if r.version == version]
        if view.upload is not None and view.upload.version == version:
            keys.append({"pk": {"S": file_pk(file_id)}, "sk": {"S": "upload"}})
        self._batch_delete(keys)
        deleted = len(keys)
        if view.meta is not None and view.meta.version == version:
            try:
                self.client.delete_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": file_pk(file_id)}, "sk": {"S": "meta"}},
                    ConditionExpression="version = :v",
                    ExpressionAttributeValues={":v": {"S": version}},
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise domain_error(exc, "delete file") from exc
            except BotoCoreError as exc:
                raise domain_error(exc, "delete file") from exc
            deleted += 1
        return deleted

    def files_to_collect(self, now: int) -> list[FileRecord]:
        """Files that are tombstoned (``deleting``) or whose expiry has passed.

        A Query of the sparse ``by_collect`` index up to ``now``: it reads only files due
        for collection, however many files the table holds.
        """
        out: list[FileRecord] = []
        try:
            pages = self.client.get_paginator("query").paginate(
                TableName=self.table_name,
                IndexName=COLLECT_INDEX,
                KeyConditionExpression="collect_pk = :c AND collect_sk <= :due",
                # "~" sorts after every id character: every file due up to ``now``.
                ExpressionAttributeValues={":c": {"S": COLLECT_PK},
                                           ":due": {"S": f"{max(now, 0):012d}#~"}},
            )
            for page in pages:
                out.extend(_meta_record(item) for item in page.get("Items", []))
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "find files to collect") from exc
        return out

    def drop_work(self, node_id: str, kind: str, file_id: str, version: str) -> int:
        """Remove a node's queued work of one kind for one file version (superseded)."""
        stale = [w for w in self.pending_work(node_id, 0)
                 if w.kind == kind and w.file_id == file_id and w.version == version]
        self._batch_delete([{"pk": {"S": node_work_pk(node_id)}, "sk": {"S": f"work#{w.work_id}"}}
                            for w in stale])
        return len(stale)

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


    def _batch_delete(self, keys: list[dict[str, Any]]) -> None:
        for start in range(0, len(keys), _BATCH):
            pending: list[dict[str, Any]] = [
                {"DeleteRequest": {"Key": key}} for key in keys[start:start + _BATCH]
            ]
            for attempt in range(_BATCH_RETRIES):
                try:
                    answer = self.client.batch_write_item(
                        RequestItems={self.table_name: pending}  # type: ignore[dict-item]
                    )
                except (ClientError, BotoCoreError) as exc:
                    raise domain_error(exc, "delete items") from exc
                pending = answer.get("UnprocessedItems", {}).get(self.table_name, [])  # type: ignore[assignment]
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))  # throttled: back off, then resend
            else:
                raise Unavailable("delete items failed: the table kept throttling")


def _add_to_view(view: FileView, item: dict[str, Any]) -> None:
    sk = item["sk"]["S"]
    if sk == "meta":
        view.meta = _meta_record(item)
    elif sk == "upload":
        view.upload = PendingUpload.from_item(item)
    elif sk.startswith("chunk#"):
        view.chunks.append(ChunkRecord.from_item(item))
    elif sk.startswith("replica#"):
        view.replicas.append(ReplicaRecord.from_item(item))


def _collect_sk(file_id: str, due: int) -> str:
    return f"{max(due, 0):012d}#{file_id}"


def _meta_item(meta: FileRecord) -> dict[str, Any]:
    """A ``meta`` item: the expiry kept apart from the TTL attribute, and indexed."""
    item = dict(meta.to_item())
    item.pop("expires_at", None)
    if meta.expires_at is not None:
        item[_FILE_EXPIRY] = {"N": str(meta.expires_at)}
        item["collect_pk"] = {"S": COLLECT_PK}
        item["collect_sk"] = {"S": _collect_sk(meta.file_id, meta.expires_at)}
    return item


def _meta_record(item: dict[str, Any]) -> FileRecord:
    data = {k: v for k, v in item.items() if k != "expires_at"}
    if _FILE_EXPIRY in data:
        data["expires_at"] = data.pop(_FILE_EXPIRY)
    return FileRecord.from_item(data)


def _item_key(item: dict[str, Any]) -> dict[str, Any]:
    return {"pk": item["pk"], "sk": item["sk"]}


def _encode_token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def _decode_token(token: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(key, dict) or set(key) != _LISTING_KEY:
            raise ValueError("unexpected key shape")
        if not all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str)
                   for v in key.values()):
            raise ValueError("unexpected key values")
    except (ValueError, TypeError) as exc:
        raise InvalidInput("next_token is not valid", field="next_token") from exc
    return key


