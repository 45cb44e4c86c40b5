"""The control plane's settings: read from the environment once, on first use.

The tunable ones and their defaults are ``fsnode_core.control_plane_settings`` (the
schema CDK deploys from); this adds the names of the resources the stack creates.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from fsnode_core import settings_env
from fsnode_core.control_plane_settings import ControlPlaneOptions


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(ControlPlaneOptions):
    """Every setting named in docs/PROTOCOL.md, typed."""

    nodes_table: str
    chunks_table: str
    bucket: str
    idempotency_table: str = ""
    ca_arn: str = ""
    join_token_secret: str = ""
    signing_key_secret: str = ""
    admin_key_secret: str = ""
    api_keys_table: str = ""
    replicate_state_machine_arn: str | None = None
    gc_state_machine_arn: str | None = None
    publish_state_machine_arn: str | None = None
    hash_state_machine_arn: str | None = None
    # Functions the API handler invokes for rights its own role lacks (chalicelib.invoke).
    issue_certificate_function: str = ""
    report_work_function: str = ""
    # Node trust (docs/PROTOCOL.md "Node trust"; the namespace and the probe's timeout
    # are in the schema): the role whose signed GetCallerIdentity a registration must
    # carry (empty: none asked) and the STS endpoint that request is sent to.
    edge_role_arn: str = ""
    sts_endpoint: str = ""
    # Public names (docs/PROTOCOL.md "Public names"): NODE_ID.edge_domain records in the
    # hosted zone, and the exportable public certificate for *.edge_domain with the
    # secret its export is kept in (empty: edges are reached at their endpoints).
    edge_domain: str = ""
    hosted_zone_id: str = ""
    public_certificate_arn: str = ""
    public_certificate_secret: str = ""
    refresh_public_certificate_function: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build from ``env`` (``os.environ`` by default); a SettingError (a ValueError)
        names the first variable that is missing or not valid."""
        source = os.environ if env is None else env
        bucket = settings_env.required(source, "FSNODE_BUCKET")
        options = ControlPlaneOptions.values_from_env(source)
        # The origin is always importable from; more buckets only when listed.
        options["import_buckets"] = options["import_buckets"] or (bucket,)
        return cls(
            **options,
            nodes_table=settings_env.required(source, "FSNODE_NODES_TABLE"),
            chunks_table=settings_env.required(source, "FSNODE_CHUNKS_TABLE"),
            bucket=bucket,
            idempotency_table=source.get("FSNODE_IDEMPOTENCY_TABLE", ""),
            ca_arn=source.get("FSNODE_CA_ARN", ""),
            join_token_secret=source.get("FSNODE_JOIN_TOKEN_SECRET", ""),
            signing_key_secret=source.get("FSNODE_SIGNING_KEY_SECRET", ""),
            admin_key_secret=source.get("FSNODE_ADMIN_KEY_SECRET", ""),
            api_keys_table=source.get("FSNODE_API_KEYS_TABLE", ""),
            replicate_state_machine_arn=settings_env.optional(
                source, "FSNODE_REPLICATE_STATE_MACHINE_ARN"),
            gc_state_machine_arn=settings_env.optional(source, "FSNODE_GC_STATE_MACHINE_ARN"),
            publish_state_machine_arn=settings_env.optional(
                source, "FSNODE_PUBLISH_STATE_MACHINE_ARN"),
            hash_state_machine_arn=settings_env.optional(
                source, "FSNODE_HASH_CHUNKS_STATE_MACHINE_ARN"),
            issue_certificate_function=source.get("FSNODE_ISSUE_CERTIFICATE_FUNCTION", ""),
            report_work_function=source.get("FSNODE_REPORT_WORK_FUNCTION", ""),
            edge_role_arn=source.get("FSNODE_EDGE_ROLE_ARN", ""),
            sts_endpoint=_sts_endpoint(source),
            edge_domain=source.get("FSNODE_EDGE_DOMAIN", "").strip().rstrip(".").lower(),
            hosted_zone_id=source.get("FSNODE_HOSTED_ZONE_ID", ""),
            public_certificate_arn=source.get("FSNODE_PUBLIC_CERTIFICATE_ARN", ""),
            public_certificate_secret=source.get("FSNODE_PUBLIC_CERTIFICATE_SECRET", ""),
            refresh_public_certificate_function=source.get(
                "FSNODE_REFRESH_PUBLIC_CERTIFICATE_FUNCTION", ""),
        )


def _sts_endpoint(env: Mapping[str, str]) -> str:
    # botocore's own variables first, so the local stack's STS is moto's.
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = (env.get("FSNODE_STS_ENDPOINT") or env.get("AWS_ENDPOINT_URL_STS")
                or env.get("AWS_ENDPOINT_URL") or f"https://sts.{region}.amazonaws.com")
    return endpoint.rstrip("/")


@cache
def get_settings() -> Settings:
    """The process's settings (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env()
