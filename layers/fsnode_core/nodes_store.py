"""``NodeRegistry``: the nodes table (one item per edge node)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fsnode_core.ddb import to_attr
from fsnode_core.errors import NotFound
from fsnode_core.models import NODE_DEAD, NODE_DRAINED, NodeRecord
from fsnode_core.store_base import DynamoStore
from fsnode_core.store_errors import ConditionFailed, aws_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


# Writes a node's own calls make hold only while it is in the fleet (not dead, not
# drained): a retired node must register again rather than come back silently.
_IN_FLEET = "#status <> :dead AND #status <> :drained"
_RETIRED_VALUES = {":dead": {"S": NODE_DEAD}, ":drained": {"S": NODE_DRAINED}}


class NodeRegistry(DynamoStore):
    """Edge nodes: register, heartbeat, list. Every write that races is conditional.
    ``on_change`` is called after each write that may change where viewers are placed
    (a node added, or its status moved), so a reader caching the list can drop it."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(table_name, client)
        self._on_change = on_change or (lambda: None)

    def create(self, node: NodeRecord) -> None:
        """Store a new node; a node id that already exists is a Conflict."""
        with aws_errors("register node"):
            self.client.put_item(
                TableName=self.table_name,
                Item=node.to_item(),
                ConditionExpression="attribute_not_exists(node_id)",
            )
        self._on_change()

    def get(self, node_id: str) -> NodeRecord | None:
        """The node, or None when it is unknown (or expired by TTL)."""
        with aws_errors("read node"):
            answer = self.client.get_item(
                TableName=self.table_name, Key={"node_id": {"S": node_id}}, ConsistentRead=True
            )
        item = answer.get("Item")
        return NodeRecord.from_item(item) if item else None

    def heartbeat(
        self,
        node_id: str,
        *,
        used_bytes: int,
        free_bytes: int,
        capacity_bytes: int,
        load: float,
        hot_files: list[str],
        now: int,
        expires_at: int,
    ) -> NodeRecord:
        """Record a heartbeat and push the TTL out; a retired or unknown node is NotFound."""
        values: dict[str, Any] = {
            ":used": used_bytes,
            ":free": free_bytes,
            ":cap": capacity_bytes,
            ":load": float(load),
            ":hot": hot_files,
            ":now": now,
            ":exp": expires_at,
        }
        with aws_errors("record heartbeat", if_condition_fails=_not_registered(node_id)):
            answer = self.client.update_item(
                TableName=self.table_name,
                Key={"node_id": {"S": node_id}},
                UpdateExpression=(
                    "SET used_bytes = :used, free_bytes = :free, capacity_bytes = :cap, "
                    "#load = :load, hot_files = :hot, last_heartbeat = :now, expires_at = :exp"
                ),
                ConditionExpression=f"attribute_exists(node_id) AND {_IN_FLEET}",
                ExpressionAttributeNames={"#load": "load", "#status": "status"},
                ExpressionAttributeValues={
                    **{k: to_attr(v) for k, v in values.items()},
                    **_RETIRED_VALUES,
                },
                ReturnValues="ALL_NEW",
            )
        # No on_change: a beat moves only load and liveness, which readers may take
        # within their cache bound (at a thousand nodes, dozens of beats a second would
        # empty every cache as soon as it was filled).
        return NodeRecord.from_item(answer["Attributes"])

    def set_status(self, node_id: str, status: str, *, expected: str) -> None:
        """Move a node from ``expected`` to ``status``; Conflict if someone moved it first."""
        with aws_errors("change node status"):
            self.client.update_item(
                TableName=self.table_name,
                Key={"node_id": {"S": node_id}},
                UpdateExpression="SET #status = :new",
                ConditionExpression="#status = :old",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":new": {"S": status}, ":old": {"S": expected}},
            )
        self._on_change()

    def mark_dead(self, node_id: str, last_heartbeat: int) -> bool:
        """Declare a silent node dead; False when it heartbeat since, or is already
        retired (dead, or drained: a drained node stops beating and stays drained).

        Conditional on the heartbeat seen, so a node that beats in between stays alive.
        """
        try:
            with aws_errors("mark node dead"):
                self.client.update_item(
                    TableName=self.table_name,
                    Key={"node_id": {"S": node_id}},
                    UpdateExpression="SET #status = :dead",
                    ConditionExpression=f"last_heartbeat = :seen AND {_IN_FLEET}",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={
                        **_RETIRED_VALUES,
                        ":seen": {"N": str(last_heartbeat)},
                    },
                )
        except ConditionFailed:
            return False
        self._on_change()
        return True

    def retire(self, node_id: str) -> None:
        """Declare a node dead whatever its heartbeat (another node proved its endpoint);
        a node already retired (dead, drained) or gone is left as it is."""
        try:
            with aws_errors("retire node"):
                self.client.update_item(
                    TableName=self.table_name,
                    Key={"node_id": {"S": node_id}},
                    UpdateExpression="SET #status = :dead",
                    ConditionExpression=f"attribute_exists(node_id) AND {_IN_FLEET}",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues=_RETIRED_VALUES,
                )
        except ConditionFailed:
            return
        self._on_change()

    def set_certificate(self, node_id: str, certificate_arn: str, certificate_sha256: str) -> None:
        """Record a renewed certificate (its ARN and the SHA-256 of its DER form);
        NotFound for an unknown or retired node."""
        with aws_errors("record certificate", if_condition_fails=_not_registered(node_id)):
            self.client.update_item(
                TableName=self.table_name,
                Key={"node_id": {"S": node_id}},
                UpdateExpression="SET certificate_arn = :arn, certificate_sha256 = :sha",
                ConditionExpression=f"attribute_exists(node_id) AND {_IN_FLEET}",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":arn": {"S": certificate_arn},
                    ":sha": {"S": certificate_sha256},
                    **_RETIRED_VALUES,
                },
            )

    def list_nodes(self) -> list[NodeRecord]:
        """Every node (a paginated Scan: the fleet is small)."""
        nodes: list[NodeRecord] = []
        with aws_errors("list nodes"):
            for page in self.client.get_paginator("scan").paginate(TableName=self.table_name):
                nodes.extend(NodeRecord.from_item(item) for item in page.get("Items", []))
        return sorted(nodes, key=lambda node: node.node_id)


def _not_registered(node_id: str) -> NotFound:
    return NotFound("node is not registered (or was marked dead or drained)", node_id=node_id)
