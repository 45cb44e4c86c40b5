"""``ApiKeyStore``: the API keys table (one item per key, never the key itself)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fsnode_core.ddb import AttributeMap, from_attrs, to_attr, to_attrs
from fsnode_core.errors import NotFound
from fsnode_core.store_base import DynamoStore
from fsnode_core.store_errors import aws_errors

ROLE_ADMIN = "admin"  # every management route, keys included
ROLE_USER = "user"  # every management route except the keys
ROLES = (ROLE_ADMIN, ROLE_USER)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One API key as the table keeps it: its id, name, role and the SHA-256 of its
    secret part. ``revoked_at`` (unix seconds) is set once; a revoked key stays listed."""

    key_id: str
    name: str
    role: str
    secret_sha256: str
    created_at: int
    revoked_at: int | None = None

    def to_item(self) -> AttributeMap:
        """The DynamoDB item for this key."""
        return to_attrs(asdict(self))

    @classmethod
    def from_item(cls, item: AttributeMap) -> ApiKeyRecord:
        """Build a record from a DynamoDB item (unknown attributes are ignored)."""
        data = from_attrs(item)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    def to_api(self) -> dict[str, Any]:
        """The public view: never the hash."""
        return {"key_id": self.key_id, "name": self.name, "role": self.role,
                "created_at": self.created_at, "revoked_at": self.revoked_at}


class ApiKeyStore(DynamoStore):
    """API keys: create, read, list, revoke."""

    def create(self, record: ApiKeyRecord) -> None:
        """Store a new key; an id that already exists is a Conflict."""
        with aws_errors("create api key"):
            self.client.put_item(TableName=self.table_name, Item=record.to_item(),
                                 ConditionExpression="attribute_not_exists(key_id)")

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The key, or None when it is unknown (a strongly consistent read: a key works
        as soon as ``create`` returned)."""
        with aws_errors("read api key"):
            answer = self.client.get_item(TableName=self.table_name,
                                          Key={"key_id": {"S": key_id}}, ConsistentRead=True)
        item = answer.get("Item")
        return ApiKeyRecord.from_item(item) if item else None

    def list_page(self, limit: int, start: str | None = None
                  ) -> tuple[list[ApiKeyRecord], str | None]:
        """One page of keys (a Scan: the table holds a handful) and the next page's start."""
        kwargs: dict[str, Any] = {"TableName": self.table_name, "Limit": limit}
        if start:
            kwargs["ExclusiveStartKey"] = {"key_id": {"S": start}}
        with aws_errors("list api keys"):
            answer = self.client.scan(**kwargs)
        records = sorted((ApiKeyRecord.from_item(item) for item in answer.get("Items", [])),
                         key=lambda record: (record.created_at, record.key_id))
        last = answer.get("LastEvaluatedKey")
        return records, (str(last["key_id"]["S"]) if last else None)

    def revoke(self, key_id: str, now: int) -> ApiKeyRecord:
        """Mark the key revoked (the first revocation's time stays); NotFound if unknown."""
        with aws_errors("revoke api key",
                        if_condition_fails=NotFound("no such api key", key_id=key_id)):
            answer = self.client.update_item(
                TableName=self.table_name, Key={"key_id": {"S": key_id}},
                UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :now)",
                ConditionExpression="attribute_exists(key_id)",
                ExpressionAttributeValues={":now": to_attr(now)}, ReturnValues="ALL_NEW")
        return ApiKeyRecord.from_item(answer["Attributes"])
