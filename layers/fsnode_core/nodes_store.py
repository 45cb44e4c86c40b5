"""``NodeRegistry``: the nodes table (one item per edge node)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from fsnode_core.ddb import to_attr
from fsnode_core.errors import NotFound
from fsnode_core.models import NODE_DEAD, NodeRecord
from fsnode_core.store_base import DynamoStore
from fsnode_core.store_errors import domain_error, error_code

if TYPE_CHECKING:
    pass


class NodeRegistry(DynamoStore):
    """Edge nodes: register, heartbeat, list. Every write that races is conditional."""

    def create(self, node: NodeRecord) -> None:
        """Store a new node; a node id that already exists is a Conflict."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=node.to_item(),
                ConditionExpression="attribute_not_exists(node_id)",
            )
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "register node") from exc

    def get(self, node_id: str) -> NodeRecord | None:
        """The node, or None when it is unknown (or expired by TTL)."""
        try:
            answer = self.client.get_item(
                TableName=self.table_name, Key={"node_id": {"S": node_id}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "read node") from exc
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
        """Record a heartbeat and push the TTL out; a dead or unknown node is NotFound."""
        values: dict[str, Any] = {
            ":used": used_bytes,
            ":free": free_bytes,
            ":cap": capacity_bytes,
            ":load": float(load),
            ":hot": hot_files,
            ":now": now,
            ":exp": expires_at,
            ":dead": NODE_DEAD,
        }
        try:
            answer = self.client.update_item(
                TableName=self.table_name,
                Key={"node_id": {"S": node_id}},
                UpdateExpression=(
                    "SET used_bytes = :used, free_bytes = :free, capacity_bytes = :cap, "
                    "#load = :load, hot_files = :hot, last_heartbeat = :now, expires_at = :exp"
                ),
                # A node pruned as dead must register again rather than come back silently.
                ConditionExpression="attribute_exists(node_id) AND #status <> :dead",
                ExpressionAttributeNames={"#load": "load", "#status": "status"},
                ExpressionAttributeValues={k: to_attr(v) for k, v in values.items()},
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise NotFound("node is not registered (or was marked dead)",
                               node_id=node_id) from exc
            raise domain_error(exc, "record heartbeat") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "record heartbeat") from exc
        return NodeRecord.from_item(answer["Attributes"])

    def set_status(self, node_id: str, status: str, *, expected: str) -> None:
        """Move a node from ``expected`` to ``status``; Conflict if someone moved it first."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"node_id": {"S": node_id}},
                UpdateExpression="SET #status = :new",
                ConditionExpression="#status = :old",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":new": {"S": status}, ":old": {"S": expected}},
            )
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "change node status") from exc

    def mark_dead(self, node_id: str, last_heartbeat: int) -> bool:
        """Declare a silent node dead; False when it heartbeat since, or is already dead.

        Conditional on the heartbeat seen, so a node that beats in between stays alive.
        """
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"node_id": {"S": node_id}},
                UpdateExpression="SET #status = :dead",
                ConditionExpression="last_heartbeat = :seen AND #status <> :dead",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":dead": {"S": NODE_DEAD},
                                           ":seen": {"N": str(last_heartbeat)}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise domain_error(exc, "mark node dead") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "mark node dead") from exc
        return True

    def retire(self, node_id: str) -> None:
        """Declare a node dead whatever its heartbeat (another node proved its endpoint);
        a node already dead or gone is left as it is."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"node_id": {"S": node_id}},
                UpdateExpression="SET #status = :dead",
                ConditionExpression="attribute_exists(node_id) AND #status <> :dead",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":dead": {"S": NODE_DEAD}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise domain_error(exc, "retire node") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "retire node") from exc

    def set_certificate(self, node_id: str, certificate_arn: str,
                        certificate_sha256: str) -> None:
        """Record a renewed certificate (its ARN and the SHA-256 of its DER form);
        NotFound for an unknown or dead node."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"node_id": {"S": node_id}},
                UpdateExpression="SET certificate_arn = :arn, certificate_sha256 = :sha",
                ConditionExpression="attribute_exists(node_id) AND #status <> :dead",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":arn": {"S": certificate_arn},
                                           ":sha": {"S": certificate_sha256},
                                           ":dead": {"S": NODE_DEAD}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise NotFound("node is not registered (or was marked dead)",
                               node_id=node_id) from exc
            raise domain_error(exc, "record certificate") from exc
        except BotoCoreError as exc:
            raise domain_error(exc, "record certificate") from exc

    def list_nodes(self) -> list[NodeRecord]:
        """Every node (a paginated Scan: the fleet is small)."""
        nodes: list[NodeRecord] = []
        try:
            for page in self.client.get_paginator("scan").paginate(TableName=self.table_name):
                nodes.extend(NodeRecord.from_item(item) for item in page.get("Items", []))
        except (ClientError, BotoCoreError) as exc:
            raise domain_error(exc, "list nodes") from exc
        return sorted(nodes, key=lambda node: node.node_id)
