"""``POST /files/{file_id}/complete``: check the parts, write the version manifest,
publish the version in one DynamoDB transaction, then its head and tree key.

Bounded whatever the file's size: DynamoDB sees a GetItem for the upload, one for the
file, the publishing transaction; S3 sees ListParts (paged by S3), the declaration's
GET and the manifest's PUT. A mismatch discards the upload: nothing shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.chunks import part_layout
from fsnode_core.errors import Conflict, InvalidInput, NotFound, OriginError, Unavailable
from fsnode_core.ids import check_id
from fsnode_core.models import FILE_READY, FileRecord, PendingUpload
from fsnode_core.published import VersionManifest
from fsnode_core.published_keys import version_manifest_key

from chalicelib import aws, lifecycle, manifests, publisher, replication, upload_parts, uploads
from chalicelib.observability import (
    METRIC_UPLOAD_COMPLETED,
    METRIC_UPLOAD_REJECTED,
    metrics,
)

_PUBLISH_ATTEMPTS = 3
_MISSING = ("NoSuchUpload",)


def complete(file_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Check the parts against the declared layout and SHA-256s, finish the upload,
    write the manifest, publish the version, start replication."""
    check_id(file_id, "file_id")
    etags = _parts(body)
    catalog = aws.chunk_catalog()
    upload = catalog.get_upload(file_id)
    current = catalog.get_file(file_id)
    if upload is None:
        if current is not None and current.status == FILE_READY:
            return current.to_api()  # a retried complete: already published
        raise NotFound("no upload in progress for this file", file_id=file_id)
    if upload.state != "open":
        raise Conflict(f"the upload is {upload.state}, not open", file_id=file_id)
    expected = len(part_layout(upload.size, upload.chunk_size))
    if len(etags) != expected:
        raise InvalidInput(
            f"parts must list all {expected} parts", field="parts", expected=expected
        )
    chunk_sha256, head = _finish_in_s3(upload, etags)
    stored = _Stored(
        etag=str(head["ETag"]).strip('"'), last_modified=int(head["LastModified"].timestamp())
    )
    meta = _meta(upload, stored, current)
    manifests.put_manifest(manifests.manifest_of(meta, chunk_sha256))
    meta = _publish(upload, stored, meta, current)
    metrics.add_metric(name=METRIC_UPLOAD_COMPLETED, unit="Count", value=1)
    replication.after_upload(file_id, upload.version)
    return meta.to_api()


def _finish_in_s3(upload: PendingUpload, etags: list[str]) -> tuple[str, dict[str, Any]]:
    """Complete the multipart upload once its parts are the declared ones; the chunk
    hashes and the object's HEAD. An earlier complete that got this far left the
    manifest instead of the declaration: its hashes serve."""
    s3 = aws.client("s3")
    declared = _declared(upload)
    try:
        if isinstance(declared, VersionManifest):
            assert declared.chunk_sha256 is not None
            chunk_sha256 = declared.chunk_sha256
        else:
            chunk_sha256 = declared.chunk_sha256
            if _check_parts(s3, upload, declared.part_hashes()):
                s3.complete_multipart_upload(
                    Bucket=upload.bucket,
                    Key=upload.key,
                    UploadId=upload.upload_id,
                    MultipartUpload={
                        "Parts": upload_parts.completion(declared.part_hashes(), etags)
                    },
                )
        head = s3.head_object(Bucket=upload.bucket, Key=upload.key)
    except ClientError as exc:
        _reject(upload, "the origin refused to complete the upload")
        raise InvalidInput(
            "the upload could not be completed (missing or wrong parts)", file_id=upload.file_id
        ) from exc
    except BotoCoreError as exc:
        raise Unavailable("the origin bucket is unreachable") from exc
    if int(head["ContentLength"]) != upload.size:
        _reject(upload, "size mismatch")
        raise InvalidInput(
            "uploaded size does not match the declared size",
            file_id=upload.file_id,
            declared=upload.size,
            uploaded=int(head["ContentLength"]),
        )
    return chunk_sha256, head


def _declared(upload: PendingUpload) -> Any:
    """The upload's declaration, or the manifest an earlier complete wrote over it."""
    try:
        return manifests.read_declaration(upload.file_id, upload.version)
    except OriginError:
        return manifests.read_manifest(upload.file_id, upload.version)
    except NotFound as exc:
        raise Conflict(
            "the upload's declaration is gone; upload again",
            key=version_manifest_key(upload.file_id, upload.version),
        ) from exc


@dataclass(frozen=True, slots=True)
class _Stored:
    """What S3 says of the completed object."""

    etag: str
    last_modified: int


def _publish(
    upload: PendingUpload, stored: _Stored, meta: FileRecord, current: FileRecord | None
) -> FileRecord:
    """The publishing transaction, again while only the expiry moved meanwhile; then
    the version's head and tree key, and the replaced version's retirement."""
    catalog = aws.chunk_catalog()
    now = int(time.time())
    retired = (
        lifecycle.retired(upload.file_id, upload.replaces, now)
        if upload.replaces is not None
        else None
    )
    for _ in range(_PUBLISH_ATTEMPTS):
        try:
            catalog.publish_version(
                meta, upload, current=current if upload.replaces else None, retired=retired
            )
            break
        except Conflict:
            current = catalog.get_file(upload.file_id)
            if current is not None and current.version == upload.version:
                return current  # a concurrent complete published it
            if (
                upload.replaces is not None
                and current is not None
                and current.version == upload.replaces
                and current.status == FILE_READY
            ):
                meta = _meta(upload, stored, current)  # expiry or seq moved: carry over
                continue
            if upload.replaces is None and catalog.get_upload(upload.file_id) is None:
                # A new file: a concurrent complete (still committing) or a discard took
                # the upload item. Neither is ours to undo.
                raise
            _reject(upload, "the file, its path or the version it replaces moved on")
            raise Conflict(
                "the file changed, was deleted or lost its path during the upload",
                file_id=upload.file_id,
            ) from None
    else:
        _reject(upload, "the file kept changing during the upload")
        raise Conflict(
            "the file kept changing during the upload; upload again", file_id=upload.file_id
        )
    publisher.publish(meta)
    if retired is not None:
        lifecycle.collect_if_due(retired, now)
    return meta


def _meta(upload: PendingUpload, stored: _Stored, current: FileRecord | None) -> FileRecord:
    """The ``meta`` item a completed upload publishes. The expiry asked for at init wins;
    else a new version keeps the file's (it is the file's, not a version's)."""
    now = int(time.time())
    expires_at = upload.file_expires_at
    if expires_at is None and upload.replaces is not None and current is not None:
        expires_at = current.expires_at
    seq = publisher.next_seq(current.seq if current is not None else 0)
    return FileRecord(
        file_id=upload.file_id,
        version=upload.version,
        path=upload.path,
        size=upload.size,
        content_type=upload.content_type,
        etag=stored.etag,
        last_modified=stored.last_modified,
        chunk_size=upload.chunk_size,
        bucket=upload.bucket,
        key=upload.key,
        updated_at=now,
        expires_at=expires_at,
        chunks_sha256=upload.chunks_sha256,
        seq=seq,
        published_seq=seq,
        # A new version keeps the file's creation time.
        created_at=current.created_at if current is not None else now,
    )


def _parts(body: dict[str, Any]) -> list[str]:
    """The ETags of ``parts``, which must be numbered 1, 2, ... in order."""
    parts = body.get("parts")
    if not isinstance(parts, list) or len(parts) > uploads.MAX_PARTS:
        raise InvalidInput(
            f"parts must be a list of at most {uploads.MAX_PARTS} parts", field="parts"
        )
    out = []
    for position, part in enumerate(parts, start=1):
        if (
            not isinstance(part, dict)
            or part.get("part_number") != position
            or isinstance(part.get("part_number"), bool)
            or not isinstance(part.get("etag"), str)
            or not part["etag"]
            or len(part["etag"]) > 128
        ):
            raise InvalidInput(
                "each part needs part_number (in order) and etag", field="parts", position=position
            )
        out.append(part["etag"])
    return out


def _check_parts(s3: Any, upload: PendingUpload, part_sha256: list[str]) -> bool:
    """Refuse (and discard) an upload whose parts in S3 are not the declared ones.

    False when S3 no longer has the upload open but its object exists: an earlier
    complete (which checked the parts) finished it and this one only has to publish.
    """
    try:
        wrong = upload_parts.mismatch(s3, upload, part_sha256)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _MISSING:
            raise Unavailable("the origin bucket could not list the upload's parts") from exc
        if _object_exists(s3, upload):
            return False
        # Aborted outside fsnode (a lifecycle rule) or never finished: not ours to
        # discard here; the sweep discards it when its time is up.
        raise Conflict("the upload is no longer open in S3", file_id=upload.file_id) from exc
    except BotoCoreError as exc:
        raise Unavailable("the origin bucket is unreachable") from exc
    if wrong is not None:
        _reject(upload, wrong.reason)
        raise InvalidInput(
            f"the upload was refused: {wrong.reason}",
            field="parts",
            file_id=upload.file_id,
            **wrong.details,
        )
    return True


def _object_exists(s3: Any, upload: PendingUpload) -> bool:
    try:
        s3.head_object(Bucket=upload.bucket, Key=upload.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise Unavailable("the origin bucket could not be read") from exc
    except BotoCoreError as exc:
        raise Unavailable("the origin bucket is unreachable") from exc
    return True


def _reject(upload: PendingUpload, reason: str) -> None:
    """A refused upload leaves nothing visible (``uploads.discard``)."""
    metrics.add_metric(name=METRIC_UPLOAD_REJECTED, unit="Count", value=1)
    uploads.discard(upload, reason)
