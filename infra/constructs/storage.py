"""Origin bucket and the DynamoDB tables, built from the shared ``tables.json`` layout."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}


def _attribute(spec: dict[str, str]) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=spec["name"], type=_ATTRIBUTE_TYPES[spec["type"]])


def load_table_layout(path: Path) -> dict[str, dict[str, Any]]:
    """Read the layout that the local stack also uses, so the two cannot drift."""
    layout: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    for required in ("nodes", "chunks", "idempotency", "api_keys"):
        if required not in layout:
            raise ValueError(f"{path} has no {required!r} table")
    return layout


class Storage(Construct):
    """The S3 origin and the nodes, chunks, idempotency and API keys tables.

    Who may do what with them is in infra/grants.json (infra/grants.py applies it)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        tables_json: Path,
        existing_bucket_name: str | None = None,
        import_bucket_names: Sequence[str] = (),
        multipart_abort_days: int = 3,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        if not 1 <= multipart_abort_days <= 7:
            raise ValueError("multipart_abort_days must be between 1 and 7")

        if existing_bucket_name:
            # An operator's existing origin: we only reference it and grant on it.
            self.bucket: s3.IBucket = s3.Bucket.from_bucket_name(
                self, "Origin", existing_bucket_name
            )
            self.access_log_bucket: s3.Bucket | None = None
        else:
            self.access_log_bucket = s3.Bucket(
                self,
                "AccessLogs",
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                encryption=s3.BucketEncryption.S3_MANAGED,
                enforce_ssl=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
                lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
                removal_policy=removal_policy,
            )
            self.bucket = s3.Bucket(
                self,
                "Origin",
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                encryption=s3.BucketEncryption.S3_MANAGED,
                enforce_ssl=True,
                versioned=True,
                # The web page uploads parts straight to S3 with presigned URLs and must
                # read each part's ETag (the local stack sets the same rule).
                cors=[
                    s3.CorsRule(
                        allowed_origins=["*"],
                        allowed_methods=[
                            s3.HttpMethods.GET,
                            s3.HttpMethods.PUT,
                            s3.HttpMethods.HEAD,
                        ],
                        allowed_headers=["*"],
                        exposed_headers=["ETag"],
                        max_age=3600,
                    )
                ],
                server_access_logs_bucket=self.access_log_bucket,
                server_access_logs_prefix="origin/",
                lifecycle_rules=[
                    # Abandoned presigned multipart uploads otherwise bill forever.
                    s3.LifecycleRule(
                        id="abort-incomplete-multipart",
                        abort_incomplete_multipart_upload_after=Duration.days(multipart_abort_days),
                    ),
                    # Overwrites create new versions; old ones are only needed briefly
                    # for edges still serving the previous version.
                    s3.LifecycleRule(
                        id="expire-noncurrent",
                        noncurrent_version_expiration=Duration.days(30),
                    ),
                ],
                removal_policy=removal_policy,
            )

        # Operators' buckets that POST /files/import may register: read-only, by name.
        self.import_buckets: list[s3.IBucket] = [
            s3.Bucket.from_bucket_name(self, f"Import{index}", name)
            for index, name in enumerate(dict.fromkeys(import_bucket_names))
            if name != existing_bucket_name
        ]

        layout = load_table_layout(tables_json)
        self.nodes_table = self._table("NodesTable", layout["nodes"], removal_policy)
        self.chunks_table = self._table("ChunksTable", layout["chunks"], removal_policy)
        self.idempotency_table = self._table(
            "IdempotencyTable", layout["idempotency"], removal_policy
        )
        self.api_keys_table = self._table("ApiKeysTable", layout["api_keys"], removal_policy)

    @property
    def tables(self) -> dict[str, dynamodb.Table]:
        """Every table by its name in tables.json."""
        return {
            "nodes": self.nodes_table,
            "chunks": self.chunks_table,
            "idempotency": self.idempotency_table,
            "api_keys": self.api_keys_table,
        }

    @property
    def readable_buckets(self) -> list[s3.IBucket]:
        """The origin and the import buckets: every bucket a file's bytes may live in."""
        return [self.bucket, *self.import_buckets]

    def _table(
        self, construct_id: str, spec: dict[str, Any], removal_policy: RemovalPolicy
    ) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            construct_id,
            partition_key=_attribute(spec["partition_key"]),
            sort_key=_attribute(spec["sort_key"]) if spec.get("sort_key") else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=spec.get("ttl_attribute"),
            removal_policy=removal_policy,
        )
        for index in spec.get("indexes", []):
            table.add_global_secondary_index(
                index_name=index["name"],
                partition_key=_attribute(index["partition_key"]),
                sort_key=_attribute(index["sort_key"]) if index.get("sort_key") else None,
                projection_type=dynamodb.ProjectionType.ALL,
            )
        return table
