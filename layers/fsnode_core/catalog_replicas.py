"""Replica facts and edge work in the chunks table."""

from __future__ import annotations

import time
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError

from fsnode_core.catalog_base import CatalogBase, cancel_reasons, condition_failed, item_key
from fsnode_core.errors import Gone, NotFound
from fsnode_core.models import FILE_READY, ReplicaRecord, WorkItem, file_pk, node_work_pk
from fsnode_core.store_errors import domain_error


class ReplicaStore(CatalogBase):
    """Which node holds which chunk, and the work queued for each node."""

    def put_replica(self, replica: ReplicaRecord) -> bool:
        """Record that a node holds a chunk; False when it was already recorded."""
        try:
            self.client.put_item(TableName=self.table_name, Item=replica.to_item(),
                                 ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise domain_error(exc, "record replica") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "record replica") from exc
        return True

    def put_replica_if_current(self, replica: ReplicaRecord) -> bool:
        """Record a verified copy only while its file version is current and ready.

        One transaction checks the ``meta`` item and puts the replica, so a copy that
        lands after a delete or an overwrite never points at data that is going away.
        False when the replica was already recorded; Gone when the version is not current.
        """
        refused = self._transact([
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
        ], "record replica")
        if refused is None:
            return True
        if cancel_reasons(refused)[:1] == ["ConditionalCheckFailed"]:
            raise Gone("file version is no longer current", file_id=replica.file_id)
        return False

    def replicas_on_node(self, node_id: str) -> list[ReplicaRecord]:
        """Every replica a node holds (the ``by_node`` index), e.g. after it died."""
        items = self._query_all("list node replicas", IndexName="by_node",
                                KeyConditionExpression="node_id = :n",
                                ExpressionAttributeValues={":n": {"S": node_id}})
        return [ReplicaRecord.from_item(item) for item in items]

    def delete_replicas(self, replicas: Sequence[ReplicaRecord]) -> None:
        """Forget replica facts (a dead node's, or an evicted file's); idempotent."""
        self._batch_delete([item_key(r.to_item()) for r in replicas])

    # Work for edges ----------------------------------------------------------------

    def put_work(self, work: WorkItem) -> None:
        """Queue a command for an edge; the work id must be new."""
        self._call("queue work", self.client.put_item, TableName=self.table_name,
                   Item=work.to_item(), ConditionExpression="attribute_not_exists(pk)")

    def pending_work(self, node_id: str, now: int | None = None) -> list[WorkItem]:
        """A node's unexpired work, oldest first (one paginated Query)."""
        moment = int(time.time()) if now is None else now
        items = self._query_all(
            "list work",
            KeyConditionExpression="pk = :pk AND begins_with(sk, :work)",
            # TTL deletion lags by hours, so expired work is filtered out here.
            FilterExpression="expires_at > :now",
            ExpressionAttributeValues={":pk": {"S": node_work_pk(node_id)},
                                       ":work": {"S": "work#"}, ":now": {"N": str(moment)}},
            ConsistentRead=True)
        return sorted((WorkItem.from_item(item) for item in items),
                      key=lambda work: (work.created_at, work.work_id))

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
            if condition_failed(exc):
                raise NotFound("no such work for this node (done, expired or never queued)",
                               work_id=work_id) from exc
            raise domain_error(exc, "take work") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "take work") from exc
        return WorkItem.from_item(answer["Attributes"])

    def drop_work(self, node_id: str, kind: str, file_id: str, version: str) -> int:
        """Remove a node's queued work of one kind for one file version (superseded)."""
        stale = [w for w in self.pending_work(node_id, 0)
                 if w.kind == kind and w.file_id == file_id and w.version == version]
        self._batch_delete([{"pk": {"S": node_work_pk(node_id)}, "sk": {"S": f"work#{w.work_id}"}}
                            for w in stale])
        return len(stale)
