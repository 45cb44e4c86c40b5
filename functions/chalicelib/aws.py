"""Cached AWS clients and stores; tests replace them by clearing the caches."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from fsnode_core.api_keys_store import ApiKeyStore
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.nodes_store import NodeRegistry

from chalicelib.settings import get_settings

_resets: list[Callable[[], None]] = []
_node_changes: list[Callable[[], None]] = []
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=30
)
# S3 presigns with SigV4: with SigV2 (boto3's choice for presigning in us-east-1) a part
# URL's x-amz-checksum-sha256 moves into the query string instead of being a signed
# header the PUT must send (chalicelib.upload_parts).
_S3_CONFIG = _CONFIG.merge(Config(signature_version="s3v4"))


@cache
def client(service: str) -> Any:
    """One boto3 client per service (endpoint and region come from the standard env)."""
    config = _S3_CONFIG if service == "s3" else _CONFIG
    return boto3.client(service, config=config)  # type: ignore[call-overload]


@cache
def node_registry() -> NodeRegistry:
    """The nodes table."""
    return NodeRegistry(get_settings().nodes_table, client("dynamodb"), on_change=_node_changed)


def _node_changed() -> None:
    for listener in _node_changes:
        listener()


@cache
def chunk_catalog() -> ChunkCatalog:
    """The chunks table."""
    return ChunkCatalog(get_settings().chunks_table, client("dynamodb"))


@cache
def api_key_store() -> ApiKeyStore:
    """The API keys table."""
    return ApiKeyStore(get_settings().api_keys_table, client("dynamodb"))


def reset() -> None:
    """Forget every cached client, store and setting (tests; new environment)."""
    client.cache_clear()
    node_registry.cache_clear()
    chunk_catalog.cache_clear()
    api_key_store.cache_clear()
    get_settings.cache_clear()
    for clear in _resets:
        clear()


def on_node_change(listener: Callable[[], None]) -> None:
    """Have every node write that may move placement (``NodeRegistry.on_change``) made
    through this process call ``listener`` (a module caching the node list)."""
    _node_changes.append(listener)


def on_reset(clear: Callable[[], None]) -> None:
    """Have ``reset`` clear a cache too (modules that cache what they read through
    these clients register here, so this module needs to import none of them)."""
    _resets.append(clear)
