"""Deployment settings read from CDK context (cdk.json or ``-c key=value``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from constructs import Node


@dataclass(frozen=True, slots=True, kw_only=True)
class FsnodeSettings:
    """Typed view of the context keys; defaults suit a small first deployment."""

    chunk_size: int = 4 * 1024 * 1024
    replication_factor: int = 2
    heartbeat_interval: int = 15
    heartbeat_timeout: int = 60
    cert_validity_days: int = 30
    edge_count: int = 2
    edge_max_count: int = 10
    edge_cpu: int = 1024
    edge_memory: int = 2048
    edge_ephemeral_gib: int = 100
    nat_gateways: int = 1
    existing_bucket_name: str | None = None
    existing_ca_arn: str | None = None
    domain_name: str | None = None
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        # Fail at synth with a named setting rather than at deploy with a CFN error.
        # Upload parts are whole multiples of the chunk size (fsnode_core.chunks), so a chunk
        # may be smaller than S3's 5 MiB part minimum; below 1 MiB, per-chunk overhead wins.
        if self.chunk_size < 1024 * 1024:
            raise ValueError("chunk_size must be at least 1 MiB")
        if self.replication_factor < 1:
            raise ValueError("replication_factor must be at least 1")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ValueError("heartbeat_timeout must exceed heartbeat_interval")
        if not 1 <= self.edge_count <= self.edge_max_count:
            raise ValueError("edge_count must be between 1 and edge_max_count")
        if not 21 <= self.edge_ephemeral_gib <= 200:
            raise ValueError("edge_ephemeral_gib must be between 21 and 200 (Fargate limits)")

    @classmethod
    def from_context(cls, node: Node) -> FsnodeSettings:
        """Read every field from context when present; empty strings mean unset."""
        values: dict[str, Any] = {}
        for name, field in cls.__dataclass_fields__.items():
            raw = node.try_get_context(name)
            if raw is None or raw == "":
                continue
            # ``-c key=value`` on the command line always gives strings.
            values[name] = int(raw) if field.type == "int" else str(raw)
        return cls(**values)
