"""The DynamoDB table layout, read from ``tables.json``.

The same JSON file is read by ``infra/`` (CDK) and by the local stack, so the tables
in AWS and on one machine cannot drift apart.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

TABLES_JSON = Path(__file__).with_name("tables.json")


@cache
def table_layouts() -> dict[str, dict[str, Any]]:
    """Every table's keys, TTL attribute and indexes, by logical name."""
    layouts: dict[str, dict[str, Any]] = json.loads(TABLES_JSON.read_text())
    return layouts


def create_table_kwargs(logical_name: str, table_name: str) -> dict[str, Any]:
    """Arguments for ``dynamodb.create_table`` (on-demand billing) for one layout."""
    layout = table_layouts()[logical_name]
    attributes: dict[str, str] = {}

    def key_schema(spec: dict[str, Any]) -> list[dict[str, str]]:
        keys = [spec["partition_key"]]
        if "sort_key" in spec:
            keys.append(spec["sort_key"])
        for key in keys:
            attributes[key["name"]] = key["type"]
        return [
            {"AttributeName": key["name"], "KeyType": kind}
            for key, kind in zip(keys, ("HASH", "RANGE"), strict=False)
        ]

    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "KeySchema": key_schema(layout),
        "BillingMode": "PAY_PER_REQUEST",
    }
    indexes = [
        {
            "IndexName": ix["name"],
            "KeySchema": key_schema(ix),
            "Projection": {"ProjectionType": "ALL"},
        }
        for ix in layout["indexes"]
    ]
    if indexes:
        kwargs["GlobalSecondaryIndexes"] = indexes
    kwargs["AttributeDefinitions"] = [
        {"AttributeName": name, "AttributeType": kind} for name, kind in attributes.items()
    ]
    return kwargs
