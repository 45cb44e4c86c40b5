"""What the control plane hands an edge, made the way it makes them: files published to
S3 (version manifest, head, tree key: docs/PROTOCOL.md "Published S3 objects") and
signed file and folder shares."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from typing import Any

import boto3
from fsnode_core.digests import chunks_digest, join_digests
from fsnode_core.folder_tokens import mint_folder_token
from fsnode_core.ids import new_id
from fsnode_core.paths import url_path
from fsnode_core.published import (
    SOURCE_IMPORT,
    SOURCE_UPLOAD,
    STATUS_DELETED,
    STATUS_READY,
    Head,
    Origin,
    VersionManifest,
)
from fsnode_core.published_keys import (
    data_key,
    head_key,
    parse_tree_key,
    publish_seq,
    tree_key,
    tree_path_prefix,
    version_manifest_key,
)
from fsnode_core.signing import SharePolicy, ShareSigner, private_key_from_seed, public_key_pem

from edge_node.manifest import Manifest

SEED = "edge-integration-test-seed-0123456789abcdef"
KID = "k1"
VERSION = "0" * 31 + "1"  # put_file's version (a version is an id: a pin must be one)


def signer() -> ShareSigner:
    return ShareSigner(KID, private_key_from_seed(SEED))


def share_public_keys() -> dict[str, str]:
    return {KID: public_key_pem(private_key_from_seed(SEED))}


def share_query(file_id: str, version: str | None, ttl: int = 3600) -> dict[str, str]:
    """A file share's query as the control plane's redirect sends it: the signed fields
    and, with ``version``, the unsigned pin ``v``."""
    query = signer().sign(SharePolicy(file_id, int(time.time()) + ttl))
    return {**query, "v": version} if version is not None else query


def folder_token(prefix: str, ttl: int = 3600, **policy: Any) -> str:
    """A folder share's token for ``prefix`` (``not_before``, ``ip`` as the signer takes)."""
    return mint_folder_token(signer(), prefix, int(time.time()) + ttl, **policy)


def folder_url(base: str, token: str, path: str) -> str:
    """The URL of the file at ``path`` (the folder's prefix included) under ``token``."""
    return f"{base}/t/{token}/{url_path(path)}"


def put_file(
    bucket: str,
    data: bytes,
    chunk_size: int,
    file_id: str | None = None,
    *,
    path: str | None = None,
    imported: bool = False,
    version: str = VERSION,
    content_type: str = "video/mp4",
    expires_at: int | None = None,
) -> Manifest:
    """Store ``data`` in S3 and publish it as the control plane does (version manifest,
    head, tree key: docs/PROTOCOL.md "Published S3 objects"); its manifest as the edge
    sees it. ``imported``: as an import starts, chunk hashes unknown and reads pinned to
    the object's ETag."""
    file_id = file_id or new_id()
    path = path or f"test/{file_id}.mp4"
    key = f"imports/{file_id}.bin" if imported else data_key(file_id, version)
    s3 = boto3.client("s3")
    answer = s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    etag = str(answer["ETag"]).strip('"')
    digests = [
        hashlib.sha256(data[off : off + chunk_size]).hexdigest()
        for off in range(0, len(data), chunk_size)
    ]
    published = VersionManifest(
        file_id=file_id,
        version=version,
        path=path,
        size=len(data),
        chunk_size=chunk_size,
        content_type=content_type,
        etag=etag,
        last_modified=1_700_000_000,
        source=SOURCE_IMPORT if imported else SOURCE_UPLOAD,
        origin=Origin(bucket, key, None, etag if imported else None),
        chunk_sha256=None if imported else join_digests(digests),
        chunks_sha256=None if imported else chunks_digest(digests),
    )
    publish(bucket, published, expires_at=expires_at)
    return Manifest.from_published(published)


def publish(bucket: str, published: VersionManifest, *, expires_at: int | None = None) -> None:
    """Write a version manifest, then make it current: head and tree key (the old tree
    keys of its path go), as the control plane's publisher does."""
    s3 = boto3.client("s3")
    s3.put_object(
        Bucket=bucket,
        Key=version_manifest_key(published.file_id, published.version),
        Body=published.to_json(),
    )
    seq = publish_seq()
    head = Head(
        file_id=published.file_id,
        path=published.path,
        status=STATUS_READY,
        version=published.version,
        seq=seq,
        expires_at=expires_at,
        updated_at=int(time.time()),
    )
    s3.put_object(Bucket=bucket, Key=head_key(published.file_id), Body=head.to_json())
    s3.put_object(
        Bucket=bucket,
        Key=tree_key(published.path, seq, published.file_id, published.version),
        Body=b"",
    )
    _drop_tree_keys(bucket, published.path, keep=seq)


def delete_file(bucket: str, manifest: Manifest) -> None:
    """Tombstone a file as the control plane does: a deleted head, no tree key (the
    version's manifest and bytes stay for the grace period)."""
    head = Head(
        file_id=manifest.file_id,
        path=manifest.path,
        status=STATUS_DELETED,
        version=None,
        seq=publish_seq(),
        expires_at=None,
        updated_at=int(time.time()),
    )
    boto3.client("s3").put_object(
        Bucket=bucket, Key=head_key(manifest.file_id), Body=head.to_json()
    )
    _drop_tree_keys(bucket, manifest.path, keep=None)


def overwrite(bucket: str, manifest: Manifest, data: bytes, version: str) -> Manifest:
    """A new version of the same file (same id and path) with ``data``."""
    return put_file(
        bucket, data, manifest.chunk_size, manifest.file_id, path=manifest.path, version=version
    )


def write_hashes(bucket: str, manifest: Manifest, digests: list[str]) -> None:
    """The hashing job's result: the version manifest with its chunk hashes."""
    s3 = boto3.client("s3")
    key = version_manifest_key(manifest.file_id, manifest.version)
    published = VersionManifest.from_json(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    hashed = replace(
        published, chunk_sha256=join_digests(digests), chunks_sha256=chunks_digest(digests)
    )
    s3.put_object(Bucket=bucket, Key=key, Body=hashed.to_json())


def _drop_tree_keys(bucket: str, path: str, keep: int | None) -> None:
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=tree_path_prefix(path))
    for item in listed.get("Contents", []):
        entry = parse_tree_key(item["Key"])
        if entry is not None and entry.path == path and entry.seq != keep:
            s3.delete_object(Bucket=bucket, Key=item["Key"])
