"""Deployment settings read from CDK context (cdk.json or ``-c key=value``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from constructs import Node

# API Gateway ends every integration at 29 s: a synchronous replication wait must
# finish (and the answer be written) before that.
_API_GATEWAY_LIMIT_SECONDS = 29
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True, kw_only=True)
class FsnodeSettings:
    """Typed view of the context keys; defaults suit a small first deployment.

    The control-plane fields mirror docs/PROTOCOL.md (Settings) and reach the
    Lambda functions through :meth:`control_plane_environment`.
    """

    # Control plane (docs/PROTOCOL.md, Settings).
    chunk_size: int = 4 * 1024 * 1024
    replication_factor: int = 2
    replication_strategy: str = "async"
    replication_first_chunks: int = 4
    replication_max_moves: int = 3
    replication_sync_timeout: float = 25.0
    hot_replication_window: int = 300
    warm_timeout: int = 600
    evict_timeout: int = 300
    gc_retry_wait: int = 60
    gc_max_wait: int = 3600
    heartbeat_interval: int = 15
    heartbeat_timeout: int = 60
    cert_validity_days: int = 30
    # Data plane: how long replaced/deleted versions keep serving, import hashing batch,
    # edge load beyond which requests fall back to S3, and that fallback URL's lifetime.
    retire_grace_seconds: int = 21600
    hash_batch_bytes: int = 256 * 1024 * 1024
    edge_max_load: int = 0
    fallback_url_seconds: int = 3600
    # Buckets POST /files/import accepts besides the origin; edges may read them too.
    import_buckets: tuple[str, ...] = ()
    # The names and networks node certificates may be issued for (".dns.suffix" or a
    # CIDR): the EC2 public DNS names the edges register with (discover_public_url).
    node_namespace: tuple[str, ...] = (".compute.amazonaws.com", ".compute-1.amazonaws.com")
    # Seconds the control plane's TLS probe of a new node's endpoint may take.
    probe_timeout: float = 3.0
    # Base of share URLs (a custom API domain); unset: taken from the request.
    public_url: str | None = None
    # API Gateway stage throttling: steady requests per second and the burst above it.
    api_throttle_rate_limit: float = 100.0
    api_throttle_burst_limit: int = 200
    # Edge fleet: one edge per EC2 instance, each with its own public address.
    edge_count: int = 2
    edge_max_count: int = 10
    edge_instance_type: str = "c6i.large"
    edge_cache_gib: int = 100
    edge_network_target_mbps: int = 400
    # Resources to reuse instead of creating.
    existing_bucket_name: str | None = None
    existing_ca_arn: str | None = None
    # The fleet's front door: a public certificate and, with the zone, its DNS record.
    domain_name: str | None = None
    hosted_zone_id: str | None = None
    # Where alarm notifications go (an SNS email subscription); unset: topic only.
    alarm_email: str | None = None
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        # Fail at synth with a named setting rather than at deploy with a CFN error.
        # Upload parts are whole multiples of the chunk size (fsnode_core.chunks), so a chunk
        # may be smaller than S3's 5 MiB part minimum; below 1 MiB, per-chunk overhead wins.
        if self.chunk_size < 1024 * 1024:
            raise ValueError("chunk_size must be at least 1 MiB")
        if self.replication_factor < 1:
            raise ValueError("replication_factor must be at least 1")
        if self.replication_strategy not in ("sync", "async"):
            raise ValueError("replication_strategy must be sync or async")
        if not 0 < self.replication_sync_timeout < _API_GATEWAY_LIMIT_SECONDS:
            raise ValueError(
                f"replication_sync_timeout must be between 0 and {_API_GATEWAY_LIMIT_SECONDS} "
                "seconds (API Gateway's integration limit)"
            )
        for name in (
            "replication_first_chunks",
            "hot_replication_window",
            "warm_timeout",
            "evict_timeout",
            "gc_retry_wait",
            "gc_max_wait",
            "heartbeat_interval",
            "cert_validity_days",
            "edge_cache_gib",
            "edge_network_target_mbps",
            "api_throttle_rate_limit",
            "api_throttle_burst_limit",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("replication_max_moves", "retire_grace_seconds", "edge_max_load"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("hash_batch_bytes", "fallback_url_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.gc_max_wait < self.gc_retry_wait:
            raise ValueError("gc_max_wait must be at least gc_retry_wait")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ValueError("heartbeat_timeout must exceed heartbeat_interval")
        if not 1 <= self.edge_count <= self.edge_max_count:
            raise ValueError("edge_count must be between 1 and edge_max_count")
        for bucket in self.import_buckets:
            if not _BUCKET_NAME.match(bucket):
                raise ValueError(f"import_buckets: {bucket!r} is not an S3 bucket name")
        if self.hosted_zone_id and not self.domain_name:
            raise ValueError("hosted_zone_id needs domain_name (the record it would hold)")
        if not 0 < self.probe_timeout < _API_GATEWAY_LIMIT_SECONDS:
            raise ValueError("probe_timeout must be between 0 and 29 seconds")
        if not self.node_namespace:
            raise ValueError("node_namespace must name at least one .dns.suffix or network")
        if self.public_url and not self.public_url.startswith("https://"):
            raise ValueError("public_url must start with https://")

    def control_plane_environment(self) -> dict[str, str]:
        """The control plane's ``FSNODE_*`` settings that come from context, as strings.

        Resource names (tables, bucket, CA, secrets, state machines, import buckets)
        are added by the stack, which knows them.
        """
        return {
            "FSNODE_CHUNK_SIZE": str(self.chunk_size),
            "FSNODE_REPLICATION_FACTOR": str(self.replication_factor),
            "FSNODE_REPLICATION_STRATEGY": self.replication_strategy,
            "FSNODE_REPLICATION_FIRST_CHUNKS": str(self.replication_first_chunks),
            "FSNODE_REPLICATION_MAX_MOVES": str(self.replication_max_moves),
            "FSNODE_REPLICATION_SYNC_TIMEOUT": f"{self.replication_sync_timeout:g}",
            "FSNODE_HOT_REPLICATION_WINDOW": str(self.hot_replication_window),
            "FSNODE_WARM_TIMEOUT": str(self.warm_timeout),
            "FSNODE_EVICT_TIMEOUT": str(self.evict_timeout),
            "FSNODE_GC_RETRY_WAIT": str(self.gc_retry_wait),
            "FSNODE_GC_MAX_WAIT": str(self.gc_max_wait),
            "FSNODE_HEARTBEAT_INTERVAL": str(self.heartbeat_interval),
            "FSNODE_HEARTBEAT_TIMEOUT": str(self.heartbeat_timeout),
            "FSNODE_CERT_VALIDITY_DAYS": str(self.cert_validity_days),
            "FSNODE_RETIRE_GRACE_SECONDS": str(self.retire_grace_seconds),
            "FSNODE_HASH_BATCH_BYTES": str(self.hash_batch_bytes),
            "FSNODE_EDGE_MAX_LOAD": str(self.edge_max_load),
            "FSNODE_FALLBACK_URL_SECONDS": str(self.fallback_url_seconds),
            "FSNODE_NODE_NAMESPACE": ",".join(self.node_namespace),
            "FSNODE_PROBE_TIMEOUT": f"{self.probe_timeout:g}",
            # Empty means unset to the control plane (share URLs follow the request).
            "FSNODE_PUBLIC_URL": self.public_url or "",
        }

    @classmethod
    def from_context(cls, node: Node) -> FsnodeSettings:
        """Read every field from context when present; empty strings mean unset."""
        values: dict[str, Any] = {}
        for name, field in cls.__dataclass_fields__.items():
            raw = node.try_get_context(name)
            if raw is None or raw == "" or raw == []:
                continue
            # ``-c key=value`` on the command line always gives strings.
            values[name] = _parse(str(field.type), raw)
        return cls(**values)


def _parse(kind: str, raw: Any) -> Any:
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind.startswith("tuple"):
        # A JSON list in cdk.json, or "a,b" from the command line.
        items = raw if isinstance(raw, list) else str(raw).split(",")
        return tuple(str(item).strip() for item in items if str(item).strip())
    return str(raw)
