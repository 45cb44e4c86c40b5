"""What every part of the chunks-table store shares: batched writes, the collection
index, paging tokens and transaction refusals (``ChunkCatalog`` is built from parts)."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from fsnode_core.errors import InvalidInput, Unavailable
from fsnode_core.store_base import DynamoStore
from fsnode_core.store_errors import ConditionFailed, aws_errors, error_code

_BATCH = 25  # BatchWriteItem's limit
_BATCH_RETRIES = 8
_BATCH_WORKERS = 8  # BatchWriteItem calls in flight at once (boto3 clients are thread-safe)
# The sparse ``by_collect`` index holds only items that garbage collection will want,
# sorted by when, in partitions: ``meta`` items (tombstoned, or with an expiry),
# ``retired#`` versions, and ``upload`` items (the sweep of abandoned uploads).
COLLECT_INDEX = "by_collect"
COLLECT_PK = "collect"
VERSIONS_COLLECT_PK = "versions"
UPLOADS_COLLECT_PK = "uploads"
# The sparse ``by_sync`` index holds ``meta`` items whose published S3 objects may lag
# behind them (a writer stopped between its DynamoDB write and its S3 writes).
SYNC_INDEX = "by_sync"
SYNC_PK = "sync"


def collect_sk(due: int, *parts: str) -> str:
    """A ``by_collect`` sort key: 12-digit due time, then what is due."""
    return "#".join((f"{max(due, 0):012d}", *parts))


def sync_keys(file_id: str, seq: int) -> dict[str, dict[str, str]]:
    """The attributes that put a ``meta`` item in the ``by_sync`` index."""
    return {"sync_pk": {"S": SYNC_PK}, "sync_sk": {"S": f"{seq:016d}#{file_id}"}}


def cancel_reasons(exc: ClientError) -> list[str]:
    """Per action, why a transaction was cancelled (``"None"`` for actions that held)."""
    return [str(reason.get("Code", "None"))
            for reason in exc.response.get("CancellationReasons", [])]


def condition_failed(exc: ClientError, position: int | None = None) -> bool:
    """Whether a write (or transaction action ``position``) lost its condition."""
    code = error_code(exc)
    if code == "ConditionalCheckFailedException":
        return True
    if code != "TransactionCanceledException":
        return False
    reasons = cancel_reasons(exc)
    if position is None:
        return "ConditionalCheckFailed" in reasons
    return position < len(reasons) and reasons[position] == "ConditionalCheckFailed"


def item_key(item: dict[str, Any]) -> dict[str, Any]:
    return {"pk": item["pk"], "sk": item["sk"]}


class CatalogBase(DynamoStore):
    """Helpers over the chunks table."""

    def _query_all(self, action: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item a (paginated) Query returns."""
        out: list[dict[str, Any]] = []
        with aws_errors(action):
            for page in self.client.get_paginator("query").paginate(
                    TableName=self.table_name, **kwargs):
                out.extend(page.get("Items", []))
        return out

    def _call(self, action: str, method: Any, **kwargs: Any) -> Any:
        """One DynamoDB call with its failures as domain errors."""
        with aws_errors(action):
            return method(**kwargs)

    def _get(self, key: dict[str, Any], action: str) -> dict[str, Any] | None:
        with aws_errors(action):
            answer = self.client.get_item(TableName=self.table_name, Key=key,
                                          ConsistentRead=True)
        item: dict[str, Any] | None = answer.get("Item")
        return item

    def _delete_if(self, key: dict[str, Any], condition: str, values: dict[str, Any],
                   action: str, names: dict[str, str] | None = None) -> bool:
        """Delete an item if ``condition`` holds; False when it did not."""
        extra: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        try:
            with aws_errors(action):
                self.client.delete_item(TableName=self.table_name, Key=key,
                                        ConditionExpression=condition,
                                        ExpressionAttributeValues=values, **extra)
        except ConditionFailed:
            return False
        return True

    def _transact(self, actions: list[dict[str, Any]], action: str) -> ClientError | None:
        """Run a transaction; the ClientError when a condition cancelled it (the caller
        reads which), a domain error for any other failure."""
        try:
            with aws_errors(action):
                self.client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except ConditionFailed as failed:
            cause = failed.__cause__
            assert isinstance(cause, ClientError)
            return cause
        return None

    def _due_for_collection(self, partition: str, now: int, action: str) -> list[dict[str, Any]]:
        """Every ``by_collect`` item of ``partition`` due up to ``now`` (a paginated Query)."""
        return self._query_all(
            action, IndexName=COLLECT_INDEX,
            KeyConditionExpression="collect_pk = :c AND collect_sk <= :due",
            # "~" sorts after every id character: every item due up to ``now``.
            ExpressionAttributeValues={":c": {"S": partition},
                                       ":due": {"S": f"{max(now, 0):012d}#~"}})

    def _batch_put(self, items: list[dict[str, Any]]) -> None:
        self._batch_write([{"PutRequest": {"Item": item}} for item in items], "write items")

    def _batch_delete(self, keys: list[dict[str, Any]]) -> None:
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys], "delete items")

    def _batch_write(self, requests: list[dict[str, Any]], action: str) -> None:
        """BatchWriteItem in batches of 25; many batches go a few at a time."""
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
            with aws_errors(action):
                answer = self.client.batch_write_item(
                    RequestItems={self.table_name: pending}  # type: ignore[dict-item]
                )
            pending = answer.get("UnprocessedItems", {}).get(self.table_name, [])  # type: ignore[assignment]
            if not pending:
                return
            time.sleep(min(0.05 * 2**attempt, 1.0))  # throttled: back off, then resend
        raise Unavailable(f"{action} failed: the table kept throttling")


def encode_token(key: dict[str, Any]) -> str:
    """A Query's LastEvaluatedKey as an opaque paging token."""
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def decode_token(token: str, names: set[str], field: str = "next_token") -> dict[str, Any]:
    """A paging token back into an ExclusiveStartKey of string attributes ``names``."""
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(key, dict) or set(key) != names:
            raise ValueError("unexpected key shape")
        if not all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str)
                   for v in key.values()):
            raise ValueError("unexpected key values")
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{field} is not valid", field=field) from exc
    return key
