"""Deployment settings read from CDK context (cdk.json or ``-c key=value``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from constructs import Node
from fsnode_core.control_plane_settings import ControlPlaneOptions
from fsnode_core.settings_env import SettingError

# API Gateway ends every integration at 29 s: a synchronous replication wait must
# finish (and the answer be written) before that.
_API_GATEWAY_LIMIT_SECONDS = 29


@dataclass(frozen=True, slots=True, kw_only=True)
class FsnodeSettings(ControlPlaneOptions):
    """Typed view of the context keys; defaults suit a small first deployment.

    The control-plane fields and their defaults are ``ControlPlaneOptions`` (the schema
    the functions read back from their environment); they reach the Lambda functions
    through :meth:`control_plane_environment`. The fields here are the deployment's.
    """

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
        # (A slots dataclass has no zero-argument super().)
        ControlPlaneOptions.__post_init__(self)
        # What AWS needs beyond what the control plane accepts (the local stack runs
        # smaller chunks and plain-HTTP URLs). Upload parts are whole multiples of the
        # chunk size (fsnode_core.chunks), so a chunk may be smaller than S3's 5 MiB part
        # minimum; below 1 MiB, per-chunk overhead wins.
        if self.chunk_size < 1024 * 1024:
            raise SettingError("chunk_size", "must be at least 1 MiB")
        if self.replication_sync_timeout >= _API_GATEWAY_LIMIT_SECONDS:
            raise SettingError(
                "replication_sync_timeout",
                f"must be below {_API_GATEWAY_LIMIT_SECONDS} seconds (API Gateway's "
                "integration limit)",
            )
        for name in (
            "edge_cache_gib",
            "edge_network_target_mbps",
            "api_throttle_rate_limit",
            "api_throttle_burst_limit",
        ):
            if getattr(self, name) <= 0:
                raise SettingError(name, "must be positive")
        if not 1 <= self.edge_count <= self.edge_max_count:
            raise SettingError("edge_count", "must be between 1 and edge_max_count")
        if self.hosted_zone_id and not self.domain_name:
            raise SettingError("hosted_zone_id", "needs domain_name (the record it would hold)")
        if not 0 < self.probe_timeout < _API_GATEWAY_LIMIT_SECONDS:
            raise SettingError("probe_timeout", "must be between 0 and 29 seconds")
        if not self.node_namespace:
            raise SettingError("node_namespace", "must name at least one .dns.suffix or network")
        if self.public_url and not self.public_url.startswith("https://"):
            raise SettingError("public_url", "must start with https://")

    def control_plane_environment(self) -> dict[str, str]:
        """The control plane's ``FSNODE_*`` settings that come from context, as strings.

        Resource names (tables, bucket, CA, secrets, state machines, import buckets)
        are added by the stack, which knows them.
        """
        return self.to_env()

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
