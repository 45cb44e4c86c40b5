"""The control plane's settings: read from the environment once, on first use."""

from __future__ import annotations

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
    api_key_secret: str | None
    chunk_size: int
    cert_validity_days: int
    heartbeat_interval: int
    heartbeat_timeout: int
    replication_factor: int
    replicate_state_machine_arn: str | None
    gc_state_machine_arn: str | None
    public_url: str | None

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
            api_key_secret=env.get("FSNODE_API_KEY_SECRET") or None,
            chunk_size=int(env.get("FSNODE_CHUNK_SIZE", str(DEFAULT_CHUNK_SIZE))),
            cert_validity_days=int(env.get("FSNODE_CERT_VALIDITY_DAYS", "30")),
            heartbeat_interval=interval,
            heartbeat_timeout=int(env.get("FSNODE_HEARTBEAT_TIMEOUT", str(interval * 3))),
            replication_factor=int(env.get("FSNODE_REPLICATION_FACTOR", "2")),
            replicate_state_machine_arn=env.get("FSNODE_REPLICATE_STATE_MACHINE_ARN") or None,
            gc_state_machine_arn=env.get("FSNODE_GC_STATE_MACHINE_ARN") or None,
            public_url=(env.get("FSNODE_PUBLIC_URL") or "").rstrip("/") or None,
        )


@cache
def get_settings() -> Settings:
    """The process's settings (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env()
