"""What every DynamoDB store shares: its table and a client built only when needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class DynamoStore:
    """A store over one table; tests pass a client, Lambda builds one on first use."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        """The DynamoDB client, built on first use when none was given."""
        if self._client is None:
            self._client = boto3.client("dynamodb")
        return self._client
