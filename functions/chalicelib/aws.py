"""Cached AWS clients and stores; tests replace them by clearing the caches."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.nodes_store import NodeRegistry

from chalicelib.settings import get_settings

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5,
                 read_timeout=30)


@cache
def client(service: str) -> Any:
    """One boto3 client per service (endpoint and region come from the standard env)."""
    return boto3.client(service, config=_CONFIG)  # type: ignore[call-overload]


@cache
def node_registry() -> NodeRegistry:
    """The nodes table."""
    return NodeRegistry(get_settings().nodes_table, client("dynamodb"))


@cache
def chunk_catalog() -> ChunkCatalog:
    """The chunks table."""
    return ChunkCatalog(get_settings().chunks_table, client("dynamodb"))


def reset() -> None:
    """Forget every cached client, store and setting (tests; new environment)."""
    client.cache_clear()
    node_registry.cache_clear()
    chunk_catalog.cache_clear()
    get_settings.cache_clear()
    from chalicelib import secret_store

    secret_store.clear()
