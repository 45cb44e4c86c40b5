"""Replica facts and edge work in the chunks table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fsnode_core.catalog_base import CatalogBase, condition_failed
from fsnode_core.errors import Gone, NotFound
from fsnode_core.models import FILE_READY, WorkItem, file_pk, node_work_pk
from fsnode_core.replica_blocks import (
    ReplicaBlock,
    ReplicaRecord,
    block_of,
    by_block,
    replica_block_sk,
    replica_prefix,
)
from fsnode_core.store_errors import domain_error

_TRANSACTION_ACTIONS = 100  # DynamoDB's limit per transaction


class ReplicaStore(CatalogBase):
    """Which node holds which chunk (compact blocks), and the work queued for each node."""

    def put_replica(self, replica: ReplicaRecord) -> bool:
        """Record that a node holds a chunk; False when it was already recorded."""
        update = _add_chunks(
            self.table_name,
            replica.file_id,
            replica.version,
            replica.node_id,
            [replica.index],
            replica.created_at,
        )
        update["ConditionExpression"] = "attribute_not_exists(chunks) OR NOT contains(chunks, :i)"
        update["ExpressionAttributeValues"][":i"] = {"N": str(replica.index)}
        try:
            self.client.update_item(**update)
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise domain_error(exc, "record replica") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "record replica") from exc
        return True

    def put_replicas_if_current(
        self,
        file_id: str,
        version: str,
        node_id: str,
        indices: Sequence[int],
        now: int | None = None,
    ) -> None:
        """Record verified copies only while their file version is current and ready.

        Each transaction checks the ``meta`` item and adds the chunks to their blocks,
        so a copy that lands after a delete or an overwrite never points at data that
        is going away. Gone when the version is not current.
        """
        moment = int(time.time()) if now is None else now
        updates = [
            {"Update": _add_chunks(self.table_name, file_id, version, node_id, group, moment)}
            for group in by_block(indices).values()
        ]
        check = {
            "ConditionCheck": {
                "TableName": self.table_name,
                "Key": {"pk": {"S": file_pk(file_id)}, "sk": {"S": "meta"}},
                "ConditionExpression": "#status = :ready AND version = :v",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":ready": {"S": FILE_READY}, ":v": {"S": version}},
            }
        }
        step = _TRANSACTION_ACTIONS - 1  # the meta check is one action of each
        for start in range(0, len(updates), step):
            if self._transact([check, *updates[start : start + step]], "record replicas"):
                raise Gone("file version is no longer current", file_id=file_id)

    def replica_blocks(
        self, file_id: str, version: str, first: int, last: int
    ) -> list[ReplicaBlock]:
        """The blocks of ``version`` covering chunks ``first..last`` (one Query)."""
        items = self._query_all(
            "read replicas",
            KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
            ExpressionAttributeValues={
                ":pk": {"S": file_pk(file_id)},
                ":low": {"S": replica_prefix(version, block_of(first))},
                ":high": {"S": replica_prefix(version, block_of(last)) + "~"},
            },
            ConsistentRead=True,
        )
        return [ReplicaBlock.from_item(item) for item in items]

    def replicas_in_range(
        self, file_id: str, version: str, first: int, last: int
    ) -> list[ReplicaRecord]:
        """Replica facts of chunks ``first..last`` of ``version``."""
        return [
            record
            for block in self.replica_blocks(file_id, version, first, last)
            for record in block.records()
            if first <= record.index <= last
        ]

    def blocks_on_node(self, node_id: str, limit: int | None = None) -> list[ReplicaBlock]:
        """A node's replica blocks (the ``by_node`` index), e.g. after it died; at most
        ``limit`` of them, so one prune run stays bounded."""
        out: list[ReplicaBlock] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": "by_node",
            "KeyConditionExpression": "node_id = :n",
            "ExpressionAttributeValues": {":n": {"S": node_id}},
        }
        if limit is not None:
            kwargs["Limit"] = limit
        while True:
            answer = self._call("list node replicas", self.client.query, **kwargs)
            out.extend(ReplicaBlock.from_item(item) for item in answer.get("Items", []))
            last = answer.get("LastEvaluatedKey")
            if not last or (limit is not None and len(out) >= limit):
                return out
            kwargs["ExclusiveStartKey"] = last

    def replicas_on_node(self, node_id: str) -> list[ReplicaRecord]:
        """Every replica fact of a node, one per chunk."""
        return [record for block in self.blocks_on_node(node_id) for record in block.records()]

    def delete_replicas(self, blocks: Sequence[ReplicaBlock]) -> None:
        """Forget whole blocks of replica facts (a dead node's, or an evicted version's);
        idempotent."""
        self._batch_delete([block.key for block in blocks])

    # Work for edges ----------------------------------------------------------------

    def put_work(self, work: WorkItem) -> None:
        """Queue a command for an edge; the work id must be new."""
        self._call(
            "queue work",
            self.client.put_item,
            TableName=self.table_name,
            Item=work.to_item(),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def pending_work(
        self, node_id: str, now: int | None = None, limit: int | None = None
    ) -> list[WorkItem]:
        """A node's unexpired work, oldest first (work ids start with their creation
        time); at most ``limit`` items, so a heartbeat answer stays bounded."""
        moment = int(time.time()) if now is None else now
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :work)",
            # TTL deletion lags by hours, so expired work is filtered out here.
            "FilterExpression": "expires_at > :now",
            "ExpressionAttributeValues": {
                ":pk": {"S": node_work_pk(node_id)},
                ":work": {"S": "work#"},
                ":now": {"N": str(moment)},
            },
            "ConsistentRead": True,
        }
        if limit is not None:
            kwargs["Limit"] = limit
        found: list[WorkItem] = []
        while True:
            answer = self._call("list work", self.client.query, **kwargs)
            found.extend(WorkItem.from_item(item) for item in answer.get("Items", []))
            last = answer.get("LastEvaluatedKey")
            if not last or (limit is not None and len(found) >= limit):
                break
            kwargs["ExclusiveStartKey"] = last
        ordered = sorted(found, key=lambda work: (work.created_at, work.work_id))
        return ordered if limit is None else ordered[:limit]

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
                raise NotFound(
                    "no such work for this node (done, expired or never queued)", work_id=work_id
                ) from exc
            raise domain_error(exc, "take work") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "take work") from exc
        return WorkItem.from_item(answer["Attributes"])

    def drop_work(self, node_id: str, kind: str, file_id: str, version: str) -> int:
        """Remove a node's queued work of one kind for one file version (superseded)."""
        stale = [
            w
            for w in self.pending_work(node_id, 0)
            if w.kind == kind and w.file_id == file_id and w.version == version
        ]
        self._batch_delete(
            [{"pk": {"S": node_work_pk(node_id)}, "sk": {"S": f"work#{w.work_id}"}} for w in stale]
        )
        return len(stale)


def _add_chunks(
    table: str, file_id: str, version: str, node_id: str, indices: Sequence[int], now: int
) -> dict[str, Any]:
    """The UpdateItem that adds chunks (all of one block) to a node's block item."""
    block = block_of(indices[0])
    return {
        "TableName": table,
        "Key": {
            "pk": {"S": file_pk(file_id)},
            "sk": {"S": replica_block_sk(version, block, node_id)},
        },
        "UpdateExpression": "ADD chunks :c SET file_id = :f, version = :v, node_id = :n, "
        "#block = :b, created_at = if_not_exists(created_at, :t)",
        "ExpressionAttributeNames": {"#block": "block"},
        "ExpressionAttributeValues": {
            ":c": {"NS": [str(i) for i in indices]},
            ":f": {"S": file_id},
            ":v": {"S": version},
            ":n": {"S": node_id},
            ":b": {"N": str(block)},
            ":t": {"N": str(now)},
        },
    }
