"""The control plane's settings: read from the environment once, on first use."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from functools import cache

from fsnode_core.chunks import DEFAULT_CHUNK_SIZE


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting named in docs/PROTOCOL.md, typed."""

    nodes_table: str
    chunks_table: str
    idempotency_table: str
    bucket: str
    ca_arn: str
    join_token_secret: str
    signing_key_secret: str
    admin_key_secret: str
    api_keys_table: str
    chunk_size: int
    cert_validity_days: int
    heartbeat_interval: int
    heartbeat_timeout: int
    replication_factor: int
    replicate_state_machine_arn: str | None
    gc_state_machine_arn: str | None
    public_url: str | None
    # Replication, prune and garbage collection (defaults keep older callers working).
    replication_strategy: str = "async"
    replication_first_chunks: int = 4
    replication_max_moves: int = 3
    replication_sync_timeout: float = 25.0
    hot_replication_window: int = 300
    warm_timeout: int = 600
    evict_timeout: int = 300
    gc_retry_wait: int = 60
    gc_max_wait: int = 3600
    # Buckets ``POST /files/import`` may register (edges must be able to read them).
    import_buckets: tuple[str, ...] = ()
    # How long a replaced or deleted version's bytes and manifest stay readable (streams
    # that began on it finish) before garbage collection takes them.
    retire_grace_seconds: int = 21600
    publish_state_machine_arn: str | None = None
    hash_state_machine_arn: str | None = None
    # Bytes one hashing step reads (a Lambda invocation's share of an import).
    hash_batch_bytes: int = 256 * 1024 * 1024
    # Open requests past which an edge takes no new viewer (0: no bound); with every
    # live edge past it, or none live, shares fall back to the origin.
    edge_max_load: int = 0
    # Lifetime of an origin fallback's presigned URL (cut to the share's expiry).
    fallback_url_seconds: int = 3600
    # Functions the API handler invokes for rights its own role lacks (chalicelib.invoke).
    issue_certificate_function: str = ""
    report_work_function: str = ""
    # Node trust (docs/PROTOCOL.md "Node trust"): the names and networks the CA issues
    # for (".suffix" DNS names, CIDRs; none: no registration is accepted), the role
    # whose signed GetCallerIdentity a registration must carry (empty: none asked),
    # the STS endpoint that request is sent to, and how long a TLS probe of a pending
    # node's endpoint may take.
    node_namespace: tuple[str, ...] = ()
    edge_role_arn: str = ""
    sts_endpoint: str = ""
    probe_timeout: float = 3.0
    # Public names (docs/PROTOCOL.md "Public names"): NODE_ID.edge_domain records in the
    # hosted zone, and the exportable public certificate for *.edge_domain with the
    # secret its export is kept in (empty: edges are reached at their endpoints).
    edge_domain: str = ""
    hosted_zone_id: str = ""
    public_certificate_arn: str = ""
    public_certificate_secret: str = ""
    refresh_public_certificate_function: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        """Build from ``os.environ``; required names raise KeyError when missing."""
        env = os.environ
        interval = int(env.get("FSNODE_HEARTBEAT_INTERVAL", "15"))
        return cls(
            nodes_table=env["FSNODE_NODES_TABLE"],
            chunks_table=env["FSNODE_CHUNKS_TABLE"],
            idempotency_table=env.get("FSNODE_IDEMPOTENCY_TABLE", ""),
            bucket=env["FSNODE_BUCKET"],
            ca_arn=env.get("FSNODE_CA_ARN", ""),
            join_token_secret=env.get("FSNODE_JOIN_TOKEN_SECRET", ""),
            signing_key_secret=env.get("FSNODE_SIGNING_KEY_SECRET", ""),
            admin_key_secret=env.get("FSNODE_ADMIN_KEY_SECRET", ""),
            api_keys_table=env.get("FSNODE_API_KEYS_TABLE", ""),
            chunk_size=int(env.get("FSNODE_CHUNK_SIZE", str(DEFAULT_CHUNK_SIZE))),
            cert_validity_days=int(env.get("FSNODE_CERT_VALIDITY_DAYS", "30")),
            heartbeat_interval=interval,
            heartbeat_timeout=int(env.get("FSNODE_HEARTBEAT_TIMEOUT", str(interval * 3))),
            replication_factor=int(env.get("FSNODE_REPLICATION_FACTOR", "2")),
            replicate_state_machine_arn=env.get("FSNODE_REPLICATE_STATE_MACHINE_ARN") or None,
            gc_state_machine_arn=env.get("FSNODE_GC_STATE_MACHINE_ARN") or None,
            public_url=(env.get("FSNODE_PUBLIC_URL") or "").rstrip("/") or None,
            replication_strategy=_strategy(env.get("FSNODE_REPLICATION_STRATEGY", "async")),
            replication_first_chunks=int(env.get("FSNODE_REPLICATION_FIRST_CHUNKS", "4")),
            replication_max_moves=int(env.get("FSNODE_REPLICATION_MAX_MOVES", "3")),
            replication_sync_timeout=float(env.get("FSNODE_REPLICATION_SYNC_TIMEOUT", "25")),
            hot_replication_window=int(env.get("FSNODE_HOT_REPLICATION_WINDOW", "300")),
            warm_timeout=int(env.get("FSNODE_WARM_TIMEOUT", "600")),
            evict_timeout=int(env.get("FSNODE_EVICT_TIMEOUT", "300")),
            gc_retry_wait=int(env.get("FSNODE_GC_RETRY_WAIT", "60")),
            gc_max_wait=int(env.get("FSNODE_GC_MAX_WAIT", "3600")),
            retire_grace_seconds=_non_negative(env, "FSNODE_RETIRE_GRACE_SECONDS", 21600),
            publish_state_machine_arn=env.get("FSNODE_PUBLISH_STATE_MACHINE_ARN") or None,
            hash_state_machine_arn=env.get("FSNODE_HASH_CHUNKS_STATE_MACHINE_ARN") or None,
            hash_batch_bytes=max(_non_negative(env, "FSNODE_HASH_BATCH_BYTES",
                                               256 * 1024 * 1024), 1),
            edge_max_load=_non_negative(env, "FSNODE_EDGE_MAX_LOAD", 0),
            fallback_url_seconds=max(_non_negative(env, "FSNODE_FALLBACK_URL_SECONDS", 3600), 1),
            issue_certificate_function=env.get("FSNODE_ISSUE_CERTIFICATE_FUNCTION", ""),
            report_work_function=env.get("FSNODE_REPORT_WORK_FUNCTION", ""),
            node_namespace=_namespace(env.get("FSNODE_NODE_NAMESPACE", "")),
            edge_role_arn=env.get("FSNODE_EDGE_ROLE_ARN", ""),
            sts_endpoint=_sts_endpoint(env),
            probe_timeout=float(env.get("FSNODE_PROBE_TIMEOUT", "3")),
            edge_domain=env.get("FSNODE_EDGE_DOMAIN", "").strip().rstrip(".").lower(),
            hosted_zone_id=env.get("FSNODE_HOSTED_ZONE_ID", ""),
            public_certificate_arn=env.get("FSNODE_PUBLIC_CERTIFICATE_ARN", ""),
            public_certificate_secret=env.get("FSNODE_PUBLIC_CERTIFICATE_SECRET", ""),
            refresh_public_certificate_function=env.get(
                "FSNODE_REFRESH_PUBLIC_CERTIFICATE_FUNCTION", ""),
            import_buckets=tuple(
                name.strip() for name in
                (env.get("FSNODE_IMPORT_BUCKETS") or env["FSNODE_BUCKET"]).split(",")
                if name.strip()),
        )


def _non_negative(env: os._Environ[str], name: str, default: int) -> int:
    value = int(env.get(name, str(default)))
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


def _namespace(value: str) -> tuple[str, ...]:
    entries = tuple(entry.strip().lower() for entry in value.split(",") if entry.strip())
    for entry in entries:
        if entry.startswith("."):
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ValueError(f"FSNODE_NODE_NAMESPACE: {entry!r} is neither a .dns.suffix "
                             "nor a network") from exc
    return entries


def _sts_endpoint(env: os._Environ[str]) -> str:
    # botocore's own variables first, so the local stack's STS is moto's.
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = (env.get("FSNODE_STS_ENDPOINT") or env.get("AWS_ENDPOINT_URL_STS")
                or env.get("AWS_ENDPOINT_URL") or f"https://sts.{region}.amazonaws.com")
    return endpoint.rstrip("/")


def _strategy(value: str) -> str:
    if value not in ("sync", "async"):
        raise ValueError(f"FSNODE_REPLICATION_STRATEGY must be sync or async, not {value!r}")
    return value


@cache
def get_settings() -> Settings:
    """The process's settings (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env()
