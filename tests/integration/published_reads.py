"""What an edge reads of a file: the head and the current version's manifest the control
plane publishes in S3 (docs/PROTOCOL.md, "Published S3 objects"), read with boto3."""

from __future__ import annotations

import boto3
from botocore.exceptions import ClientError
from fsnode_core.published import Head, VersionManifest
from fsnode_core.published_keys import head_key, version_manifest_key


def read_head(bucket: str, file_id: str) -> Head | None:
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=head_key(file_id))["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "AccessDenied"):
            return None
        raise
    return Head.from_json(body)


def read_manifest(bucket: str, file_id: str, version: str) -> VersionManifest:
    key = version_manifest_key(file_id, version)
    return VersionManifest.from_json(
        boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    )


def current_manifest(bucket: str, file_id: str) -> VersionManifest | None:
    """The manifest of the version the head names (None: no head, or deleted)."""
    head = read_head(bucket, file_id)
    if head is None or head.version is None:
        return None
    return read_manifest(bucket, file_id, head.version)
