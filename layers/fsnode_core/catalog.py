"""``ChunkCatalog``: the chunks table (files, chunks, replicas, uploads, edge work)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from fsnode_core.chunks import chunk_count, part_layout
from fsnode_core.errors import Conflict, FsnodeError, Gone, InvalidInput, NotFound, Unavailable
from fsnode_core.models import (
    FILE_DELETING,
    FILE_READY,
    LISTING_PK,
    UPLOAD_DECLARING,
    UPLOAD_DISCARDING,
    UPLOAD_OPEN,
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
_BATCH_WORKERS = 8  # BatchWriteItem calls in flight at once (boto3 clients are thread-safe)
# The sparse ``by_collect`` index holds only ``meta`` items that garbage collection will
# want: tombstoned ones (due at once) and ones with an expiry (due then), sorted by when.
COLLECT_INDEX = "by_collect"
COLLECT_PK = "collect"
# A file's expiry is stored under its own name, never as ``expires_at``: that is the
# table's TTL attribute, and DynamoDB deleting an expired ``meta`` item by itself would
# leave its chunks, replicas and S3 object with nothing pointing at them.
_FILE_EXPIRY = "file_expires_at"
# Upload items sit in the same index under their own partition, due when their time to
# complete is up: the sweep that discards abandoned uploads queries it. Their deadline is
# not the TTL attribute either: DynamoDB dropping an ``upload`` item by itself would leave
# the chunk items it wrote with nothing pointing at them.
UPLOADS_COLLECT_PK = "uploads"
_UPLOAD_DEADLINE = "upload_expires_at"
# Declared part SHA-256s per batch item: 1000 x 64 hex is ~66 KB, far under the 400 KB
# item limit, and 10,000 parts (S3's most) read back in one Query page.
PART_BATCH = 1000
_PART_BATCH_GRACE_SECONDS = 24 * 3600


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

    def put_upload(self, upload: PendingUpload) -> None:
        """Record an upload being declared: one per file; Conflict while another exists
        (the caller discards a stale one first)."""
        try:
            self.client.put_item(TableName=self.table_name, Item=_upload_item(upload),
                                 ConditionExpression="attribute_not_exists(pk)")
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "start upload") from exc

    def declare_upload(self, upload: PendingUpload, chunks: Sequence[ChunkRecord],
                       part_sha256: Sequence[str]) -> None:
        """Write an upload's declared hashes, then open it for parts.

        Chunk items of the new version (invisible: no ``meta`` names the version yet)
        and part-hash batch items (with a TTL: they only serve the upload), so no item
        grows with the file and ``complete`` writes none of them.
        """
        batches = [_part_batch_item(upload, number, part_sha256[start:start + PART_BATCH])
                   for number, start in enumerate(range(0, len(part_sha256), PART_BATCH))]
        self._batch_put(batches + [chunk.to_item() for chunk in chunks])
        self._set_upload_state(upload, UPLOAD_OPEN, expected=UPLOAD_DECLARING,
                               action="open upload")

    def get_upload(self, file_id: str) -> PendingUpload | None:
        """The file's upload in flight with its declared part hashes (one Query)."""
        items: list[dict[str, Any]] = []
        try:
            pages = self.client.get_paginator("query").paginate(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :upload)",
                ExpressionAttributeValues={":pk": {"S": file_pk(file_id)},
                                           ":upload": {"S": "upload"}},
                ConsistentRead=True,
            )
            for page in pages:
                items.extend(page.get("Items", []))
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "read upload") from exc
        found = [item for item in items if item["sk"]["S"] == "upload"]
        if not found:
            return None
        upload = _upload_record(found[0])
        if not upload.part_sha256:
            prefix = _part_batch_prefix(upload.version)
            batches = sorted((item for item in items if item["sk"]["S"].startswith(prefix)),
                             key=lambda item: item["sk"]["S"])
            upload.part_sha256 = [entry["S"] for item in batches
                                  for entry in item["part_sha256"]["L"]]
        return upload

    def touch_upload(self, upload: PendingUpload, urls_until: int) -> None:
        """Note that part URLs were handed out until ``urls_until`` (the upload is not
        stale before then); Conflict when the upload is no longer open."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": file_pk(upload.file_id)}, "sk": {"S": "upload"}},
                UpdateExpression="SET urls_until = :t",
                # An item from before upload states has none: it is open.
                ConditionExpression=("upload_id = :u AND (attribute_not_exists(#state) "
                                     "OR #state = :open)"),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":t": {"N": str(urls_until)},
                                           ":u": {"S": upload.upload_id},
                                           ":open": {"S": UPLOAD_OPEN}},
            )
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "hand out part URLs") from exc

    def publish(self, meta: FileRecord, chunks: Sequence[ChunkRecord], upload_id: str,
                *, replaces: str | None = None, replaced_expiry: int | None = None) -> None:
        """Make a completed upload visible.

        The upload's chunk items are already there (written at init; ``chunks`` only
        for an upload item from before that, written first), invisible without ``meta``
        and keyed by their own version. One transaction puts ``meta`` and consumes the
        open upload item, so a file is visible only whole and a repeated ``complete``
        cannot publish twice. A new version (``replaces``) switches ``meta`` only if
        ``replaces`` is still current and ready, with the expiry the caller saw
        (``replaced_expiry``, which the new version may have carried over): readers see
        the old version or the new one, never a mix, and an expiry changed meanwhile is
        not lost (Conflict: read and retry). The part-hash batches go last.
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
                        # An upload being declared or discarded is not complete-able.
                        "ConditionExpression": ("upload_id = :u AND (attribute_not_exists"
                                                "(#state) OR #state = :open)"),
                        "ExpressionAttributeNames": {"#state": "state"},
                        "ExpressionAttributeValues": {":u": {"S": upload_id},
                                                      ":open": {"S": UPLOAD_OPEN}},
                    }},
                ]
            )
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "publish file") from exc
        # Only the upload read them; their TTL removes them if this fails.
        with contextlib.suppress(FsnodeError):
            self._batch_delete(_part_batch_keys(meta.file_id, meta.version, meta.size,
                                                meta.chunk_size))

    def discard_upload(self, upload: PendingUpload, *, stale_at: int | None = None) -> None:
        """Forget an upload and every item it wrote.

        Marked ``discarding`` first, conditional on its upload id (and, with
        ``stale_at``, on every part URL it handed out having expired by then), so
        ``complete`` can no longer publish it; Conflict (and nothing deleted) when it was
        completed, replaced or handed out URLs meanwhile. Then its chunk and part-hash
        items go, and the upload item last: a discard that stops half way leaves a
        marked item the sweep finishes.
        """
        self._set_upload_state(upload, UPLOAD_DISCARDING, expected=None,
                               action="discard upload", stale_at=stale_at)
        keys = [{"pk": {"S": file_pk(upload.file_id)}, "sk": {"S": chunk_sk(i, upload.version)}}
                for i in range(chunk_count(upload.size, upload.chunk_size))]
        keys += _part_batch_keys(upload.file_id, upload.version, upload.size,
                                 upload.chunk_size)
        self._batch_delete(keys)
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key={"pk": {"S": file_pk(upload.file_id)}, "sk": {"S": "upload"}},
                ConditionExpression="upload_id = :u",
                ExpressionAttributeValues={":u": {"S": upload.upload_id}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise domain_error(exc, "discard upload") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "discard upload") from exc

    def uploads_due(self, now: int) -> list[PendingUpload]:
        """Uploads whose time to complete is up (a Query of ``by_collect``'s uploads)."""
        items = self._due_for_collection(UPLOADS_COLLECT_PK, now, "find abandoned uploads")
        return [_upload_record(item) for item in items]

    def _due_for_collection(self, partition: str, now: int, action: str) -> list[dict[str, Any]]:
        """Every ``by_collect`` item of ``partition`` due up to ``now`` (a paginated Query)."""
        out: list[dict[str, Any]] = []
        try:
            pages = self.client.get_paginator("query").paginate(
                TableName=self.table_name,
                IndexName=COLLECT_INDEX,
                KeyConditionExpression="collect_pk = :c AND collect_sk <= :due",
                # "~" sorts after every id character: every item due up to ``now``.
                ExpressionAttributeValues={":c": {"S": partition},
                                           ":due": {"S": f"{max(now, 0):012d}#~"}},
            )
            for page in pages:
                out.extend(page.get("Items", []))
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, action) from exc
        return out

    def _set_upload_state(self, upload: PendingUpload, state: str, *, expected: str | None,
                          action: str, stale_at: int | None = None) -> None:
        condition = "upload_id = :u"
        values: dict[str, Any] = {":u": {"S": upload.upload_id}, ":s": {"S": state}}
        if expected is not None:
            condition += " AND #state = :expected"
            values[":expected"] = {"S": expected}
        if stale_at is not None:
            # An item from before ``urls_until``: the caller judged it by its age.
            condition += " AND (attribute_not_exists(urls_until) OR urls_until < :stale)"
            values[":stale"] = {"N": str(stale_at)}
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": file_pk(upload.file_id)}, "sk": {"S": "upload"}},
                UpdateExpression="SET #state = :s",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values,
            )
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, action) from exc
        upload.state = state

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
            keys += _part_batch_keys(file_id, version, view.upload.size,
                                     view.upload.chunk_size)
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
        items = self._due_for_collection(COLLECT_PK, now, "find files to collect")
        return [_meta_record(item) for item in items]

    def drop_work(self, node_id: str, kind: str, file_id: str, version: str) -> int:
        """Remove a node's queued work of one kind for one file version (superseded)."""
        stale = [w for w in self.pending_work(node_id, 0)
                 if w.kind == kind and w.file_id == file_id and w.version == version]
        self._batch_delete([{"pk": {"S": node_work_pk(node_id)}, "sk": {"S": f"work#{w.work_id}"}}
                            for w in stale])
        return len(stale)

    # Helpers -----------------------------------------------------------------------

    def _batch_put(self, items: list[dict[str, Any]]) -> None:
        self._batch_write([{"PutRequest": {"Item": item}} for item in items], "write chunks")

    def _batch_delete(self, keys: list[dict[str, Any]]) -> None:
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys], "delete items")

    def _batch_write(self, requests: list[dict[str, Any]], action: str) -> None:
        """BatchWriteItem in batches of 25; many batches (a 100 GiB upload declares 1024)
        go a few at a time, so writing them takes seconds, not API Gateway's 29."""
        batches = [requests[start:start + _BATCH] for start in range(0, len(requests), _BATCH)]
        if len(batches) <= 2:
            for batch in batches:
                self._write_batch(batch, action)
            return
        with ThreadPoolExecutor(max_workers=min(_BATCH_WORKERS, len(batches))) as pool:
            for future in [pool.submit(self._write_batch, batch, action) for batch in batches]:
                future.result()

    def _write_batch(self, pending: list[dict[str, Any]], action: str) -> None:
        for attempt in range(_BATCH_RETRIES):
            try:
                answer = self.client.batch_write_item(
                    RequestItems={self.table_name: pending}  # type: ignore[dict-item]
                )
            except (ClientError, BotoCoreError) as exc:
                raise domain_error(exc, action) from exc
            pending = answer.get("UnprocessedItems", {}).get(self.table_name, [])  # type: ignore[assignment]
            if not pending:
                return
            time.sleep(min(0.05 * 2**attempt, 1.0))  # throttled: back off, then resend
        raise Unavailable(f"{action} failed: the table kept throttling")


def _add_to_view(view: FileView, item: dict[str, Any]) -> None:
    sk = item["sk"]["S"]
    if sk == "meta":
        view.meta = _meta_record(item)
    elif sk == "upload":
        view.upload = _upload_record(item)
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


def _upload_item(upload: PendingUpload) -> dict[str, Any]:
    """An ``upload`` item: small (hashes live in items of their own), its deadline kept
    apart from the TTL attribute, and in the collection index's uploads partition."""
    item = dict(upload.to_item())
    for name in ("expires_at", "part_sha256", "chunk_sha256"):
        item.pop(name, None)
    item[_UPLOAD_DEADLINE] = {"N": str(upload.expires_at)}
    item["collect_pk"] = {"S": UPLOADS_COLLECT_PK}
    item["collect_sk"] = {"S": _collect_sk(upload.file_id, upload.expires_at)}
    return item


def _upload_record(item: dict[str, Any]) -> PendingUpload:
    data = dict(item)
    if _UPLOAD_DEADLINE in data:  # else an older item, whose deadline is its TTL
        data["expires_at"] = data.pop(_UPLOAD_DEADLINE)
    return PendingUpload.from_item(data)


def _part_batch_prefix(version: str) -> str:
    return f"upload#{version}#parts#"


def _part_batch_item(upload: PendingUpload, number: int,
                     digests: Sequence[str]) -> dict[str, Any]:
    return {"pk": {"S": file_pk(upload.file_id)},
            "sk": {"S": f"{_part_batch_prefix(upload.version)}{number:05d}"},
            "version": {"S": upload.version},
            "part_sha256": {"L": [{"S": digest} for digest in digests]},
            # Past the upload's deadline, after the sweep had its turn.
            "expires_at": {"N": str(upload.expires_at + _PART_BATCH_GRACE_SECONDS)}}


def _part_batch_keys(file_id: str, version: str, size: int,
                     chunk_size: int) -> list[dict[str, Any]]:
    batches = -(-len(part_layout(size, chunk_size)) // PART_BATCH)
    return [{"pk": {"S": file_pk(file_id)},
             "sk": {"S": f"{_part_batch_prefix(version)}{number:05d}"}}
            for number in range(batches)]


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


