"""The control plane's tunable settings: ONE schema, with each default written once.

CDK reads it from context (``infra/settings.py`` extends it with deployment settings) and
hands it to the functions as ``FSNODE_<NAME>`` variables (:meth:`to_env`); the functions
read it back from their environment (``functions/chalicelib/settings.py`` extends it with
the resource names). docs/PROTOCOL.md (Settings) describes each one.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fsnode_core import settings_env
from fsnode_core.chunks import DEFAULT_CHUNK_SIZE
from fsnode_core.settings_env import SettingError

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_STRATEGIES = ("sync", "async")
_POSITIVE = (
    "chunk_size", "replication_first_chunks", "replication_sync_timeout",
    "hot_replication_window", "warm_timeout", "evict_timeout", "gc_retry_wait", "gc_max_wait",
    "heartbeat_interval", "cert_validity_days", "hash_batch_bytes", "fallback_url_seconds",
    "probe_timeout",
)  # fmt: skip
_NOT_NEGATIVE = (
    "replication_max_moves",
    "retire_grace_seconds",
    "edge_max_load",
    "placement_cache_seconds",
)


def env_name(field_name: str) -> str:
    """The environment variable that carries a setting to the functions."""
    return f"FSNODE_{field_name.upper()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlPlaneOptions:
    """Every tunable control-plane setting, typed, with its default."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    # Live copies per chunk; ``sync`` makes upload completion wait for the replication
    # execution (up to ``replication_sync_timeout`` s), ``async`` does not.
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
    # A node silent this long is dead. Four beats at the default interval: one beat lost
    # to a cold start or a throttled call, and its retry, still land before it.
    heartbeat_timeout: int = 60
    cert_validity_days: int = 30
    # How long a replaced or deleted version's bytes and manifest stay readable (streams
    # that began on it finish) before garbage collection takes them.
    retire_grace_seconds: int = 21600
    # Bytes one hashing step reads (a Lambda invocation's share of an import).
    hash_batch_bytes: int = 256 * 1024 * 1024
    # Open requests past which an edge takes no new viewer (0: no bound); with every
    # live edge past it, or none live, shares fall back to the origin.
    edge_max_load: int = 0
    # Share redirects and plans read the node list at most this often per process (0:
    # every time); a node's change made through the same process is seen at once.
    placement_cache_seconds: float = 2.0
    # Lifetime of an origin fallback's presigned URL (cut to the share's expiry).
    fallback_url_seconds: int = 3600
    # Buckets ``POST /files/import`` may register besides the origin (edges read them too).
    import_buckets: tuple[str, ...] = ()
    # The names and networks node certificates may be issued for (".dns.suffix" or a
    # CIDR): the EC2 public DNS names the edges register with (discover_public_url).
    node_namespace: tuple[str, ...] = (".compute.amazonaws.com", ".compute-1.amazonaws.com")
    # Seconds the control plane's TLS probe of a new node's endpoint may take.
    probe_timeout: float = 3.0
    # Base of share URLs (a custom API domain); unset: taken from the request.
    public_url: str | None = None

    def __post_init__(self) -> None:
        if self.replication_factor < 1:
            raise SettingError("replication_factor", "must be at least 1")
        if self.replication_strategy not in _STRATEGIES:
            raise SettingError("replication_strategy", "must be sync or async")
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise SettingError(name, "must be positive")
        for name in _NOT_NEGATIVE:
            if getattr(self, name) < 0:
                raise SettingError(name, "must not be negative")
        if self.gc_max_wait < self.gc_retry_wait:
            raise SettingError("gc_max_wait", "must be at least gc_retry_wait")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise SettingError("heartbeat_timeout", "must exceed heartbeat_interval")
        for bucket in self.import_buckets:
            if not _BUCKET_NAME.match(bucket):
                raise SettingError("import_buckets", f"{bucket!r} is not an S3 bucket name")
        for entry in self.node_namespace:
            if not entry.startswith(".") and not _is_network(entry):
                raise SettingError(
                    "node_namespace", f"{entry!r} is neither a .dns.suffix nor a network"
                )

    def to_env(self) -> dict[str, str]:
        """The settings as the functions' ``FSNODE_*`` variables (an unset public URL is
        empty). The import buckets are left to the caller, who adds the origin to them."""
        env = {}
        for field in dataclasses.fields(ControlPlaneOptions):
            if field.name != "import_buckets":
                env[env_name(field.name)] = _text(getattr(self, field.name))
        return env

    @staticmethod
    def values_from_env(env: Mapping[str, str]) -> dict[str, Any]:
        """Each setting's ``FSNODE_*`` variable, parsed (its default when unset); a
        SettingError names a variable that does not parse."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(ControlPlaneOptions):
            name, kind = env_name(field.name), str(field.type)
            default: Any = field.default
            if kind == "int":
                values[field.name] = settings_env.integer(env, name, default)
            elif kind == "float":
                values[field.name] = settings_env.number(env, name, default)
            elif kind.startswith("tuple"):
                values[field.name] = settings_env.names(env, name, default)
            else:  # str, or str | None
                values[field.name] = settings_env.optional(env, name) or default
        values["public_url"] = (values["public_url"] or "").rstrip("/") or None
        values["node_namespace"] = tuple(entry.lower() for entry in values["node_namespace"])
        return values


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)
