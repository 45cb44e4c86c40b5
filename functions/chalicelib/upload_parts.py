"""Multipart parts bound to their declared SHA-256, checked by S3 and again at complete.

The upload is created with ``ChecksumAlgorithm=SHA256`` and each part's presigned
UploadPart URL signs ``x-amz-checksum-sha256`` (base64 of the declared digest): SigV4
signs the header, so the PUT must carry exactly that value, and S3 refuses bytes that
do not hash to it (``400 BadDigest``) before anything is stored. Chunk hashes cannot
stand in for part hashes (a part is several chunks and SHA-256 does not compose), so
the client declares both.

``complete`` does not take S3's word for what arrived: ``mismatch`` lists the
parts and compares each one's size with the declared layout and its ``ChecksumSHA256``
with the declared digest; any difference refuses the upload.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from fsnode_core.chunks import part_layout
from fsnode_core.models import PendingUpload

from chalicelib import aws


@dataclass(frozen=True, slots=True)
class PartMismatch:
    """Why the parts in S3 are not the ones declared (the refusal's details)."""

    reason: str
    details: dict[str, Any]


def checksum_b64(sha256_hex: str) -> str:
    """S3's form of a SHA-256: base64 of the 32 raw bytes."""
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def part_url(upload: PendingUpload, part_number: int, sha256_hex: str, ttl: int) -> str:
    """A presigned UploadPart URL that only takes bytes hashing to ``sha256_hex``."""
    return str(
        aws.client("s3").generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": upload.bucket,
                "Key": upload.key,
                "UploadId": upload.upload_id,
                "PartNumber": part_number,
                "ChecksumSHA256": checksum_b64(sha256_hex),
            },
            ExpiresIn=ttl,
        )
    )


def mismatch(s3: Any, upload: PendingUpload, part_sha256: list[str]) -> PartMismatch | None:
    """How the parts S3 holds differ from the declared ones (None: they are the same).

    Lists every part (ListParts, paginated) and checks the set of part numbers, each
    part's size against the layout and its ``ChecksumSHA256`` against the declared
    digest. botocore's errors (the upload is gone, S3 unreachable) reach the caller.
    """
    listed: dict[int, dict[str, Any]] = {}
    paginator = s3.get_paginator("list_parts")
    for page in paginator.paginate(Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id):
        for part in page.get("Parts", []):
            listed[int(part["PartNumber"])] = part
    layout = part_layout(upload.size, upload.chunk_size)
    for span, sha256_hex in zip(layout, part_sha256, strict=True):
        number = span.part_number
        part = listed.pop(number, None)
        if part is None:
            return PartMismatch("a part was never uploaded", {"part_number": number})
        if int(part["Size"]) != span.length:
            return PartMismatch(
                "a part's size differs from the declared layout",
                {"part_number": number, "declared": span.length, "uploaded": int(part["Size"])},
            )
        if part.get("ChecksumSHA256") != checksum_b64(sha256_hex):
            return PartMismatch(
                "a part's SHA-256 differs from the declared one",
                {
                    "part_number": number,
                    "declared": sha256_hex,
                    "uploaded": _hex(part.get("ChecksumSHA256")),
                },
            )
    if listed:
        return PartMismatch(
            "parts beyond the declared layout were uploaded", {"part_numbers": sorted(listed)[:10]}
        )
    return None


def completion(part_sha256: list[str], etags: list[str]) -> list[dict[str, Any]]:
    """CompleteMultipartUpload's ``Parts``: each ETag with its checksum, which S3 requires
    of an upload created with ``ChecksumAlgorithm``."""
    return [
        {"PartNumber": n, "ETag": etag, "ChecksumSHA256": checksum_b64(sha256_hex)}
        for n, (etag, sha256_hex) in enumerate(zip(etags, part_sha256, strict=True), start=1)
    ]


def _hex(checksum: Any) -> str | None:
    """A listed base64 checksum as hex for the error (None if S3 kept none)."""
    try:
        return base64.b64decode(str(checksum), validate=True).hex() if checksum else None
    except ValueError:
        return None
