"""Multipart part checksums in the local stack behave as S3's do.

moto (pinned 5.2.5) takes an UploadPart's ``x-amz-checksum-sha256`` header without
checking it, keeps no checksum on the part, leaves ``ChecksumSHA256`` out of
ListParts, and completes an upload created with ``ChecksumAlgorithm`` without the
parts' checksums. fsnode's uploads rely on all four, so this patch makes moto's
server answer as S3 documents (UploadPart, ListParts, CompleteMultipartUpload):

- UploadPart with ``x-amz-checksum-ALGO`` checks the bytes: a value that is not
  the base64 of a digest is ``400 InvalidRequest``; a digest that differs from the
  body's is ``400 BadDigest`` and no part is stored. A good one is kept on the part
  and echoed in the answer's header.
- UploadPart without a checksum on an upload created with a checksum algorithm is
  ``400 InvalidRequest`` ("Checksum Type mismatch occurred, ...").
- ListParts returns each part's ``ChecksumALGO``.
- CompleteMultipartUpload of such an upload needs every part's ``ChecksumALGO``
  (``400 InvalidRequest``, "... It was missing for part N in the request.") and it
  must be the part's (``400 InvalidPart`` otherwise).

Only algorithms moto computes exactly are verified (SHA256, SHA1, CRC32); moto's
CRC32C and CRC64NVME fall back to CRC32 without their optional libraries, so a
correct value in those would be refused: they are recorded unchecked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
from typing import Any
from xml.dom import minidom

from fsnode.localstack.moto_patches import Patches

_VERIFIED = {"SHA256": 32, "SHA1": 20, "CRC32": 4}  # algorithm -> digest length
_ALGORITHMS = ("SHA256", "SHA1", "CRC32", "CRC32C", "CRC64NVME")
_TRAILER = re.compile(rb"x-amz-checksum-(\w+):\s*([A-Za-z0-9+/=]+)")
_state = threading.local()  # .checksum: (algorithm, value) for the part being stored
_patches = Patches()


def digest(body: bytes, algorithm: str) -> str:
    """The base64 checksum S3 keeps for ``body`` (one of ``_VERIFIED``)."""
    if algorithm == "SHA256":
        raw = hashlib.sha256(body).digest()
    elif algorithm == "SHA1":
        raw = hashlib.sha1(body).digest()  # S3's algorithm, not a security use
    else:
        raw = binascii.crc32(body).to_bytes(4, "big")
    return base64.b64encode(raw).decode()


def _declared(response: Any) -> tuple[str, str] | None:
    """The checksum an UploadPart carries: a header, or the aws-chunked trailer."""
    headers = response.headers
    for algorithm in _ALGORITHMS:
        value = headers.get(f"x-amz-checksum-{algorithm.lower()}")
        if value:
            return algorithm, str(value)
    named = str(headers.get("x-amz-sdk-checksum-algorithm") or "").upper()
    raw = response.raw_body if isinstance(response.raw_body, bytes) else b""
    found = _TRAILER.search(raw) if named else None
    if found is not None:
        return found.group(1).decode().upper(), found.group(2).decode()
    return None


def _multipart(response: Any) -> Any | None:
    """The multipart upload a request names, or None (moto then answers NoSuchUpload)."""
    from moto.s3.exceptions import MissingBucket

    upload_id = response._get_param("uploadId")
    try:
        bucket = response.backend.get_bucket(response.bucket_name)
    except MissingBucket:  # moto's own handler answers NoSuchBucket
        return None
    return bucket.multiparts.get(upload_id)


def _required(multipart: Any) -> str | None:
    """The algorithm every part must carry: set at CreateMultipartUpload, COMPOSITE type."""
    algorithm = str(multipart.metadata.get("x-amz-checksum-algorithm") or "").upper()
    kind = str(multipart.metadata.get("x-amz-checksum-type") or "COMPOSITE").upper()
    return algorithm if algorithm and kind == "COMPOSITE" else None


def _text(element: minidom.Element, tag: str) -> str | None:
    """The text of ``element``'s first ``tag`` child (None when absent or empty)."""
    found = element.getElementsByTagName(tag)
    node = found[0].firstChild if found else None
    return node.data if isinstance(node, minidom.Text) else None


def install() -> None:
    """Patch moto's S3 in this process (idempotent)."""
    if _patches.active:
        return
    from moto.s3.exceptions import InvalidPart, S3ClientError
    from moto.s3.models import FakeMultipart
    from moto.s3.responses import S3Response

    upload_part = S3Response.upload_part
    list_parts = S3Response.list_parts
    complete_body = S3Response._complete_multipart_body
    set_part = FakeMultipart.set_part

    def checked_upload_part(self: Any) -> Any:
        multipart = _multipart(self)
        if multipart is None:
            return upload_part(self)
        required = _required(multipart)
        declared = _declared(self)
        if declared is None:
            if required:
                raise S3ClientError(
                    "InvalidRequest",
                    "Checksum Type mismatch occurred, expected checksum Type: "
                    f"{required.lower()}, actual checksum Type: null",
                )
            return upload_part(self)
        algorithm, value = declared
        if required and algorithm != required:
            raise S3ClientError(
                "InvalidRequest",
                "Checksum Type mismatch occurred, expected checksum Type: "
                f"{required.lower()}, actual checksum Type: {algorithm.lower()}",
            )
        header = f"x-amz-checksum-{algorithm.lower()}"
        if algorithm in _VERIFIED:
            try:
                raw = base64.b64decode(value, validate=True)
            except binascii.Error:
                raw = b""
            if len(raw) != _VERIFIED[algorithm]:
                raise S3ClientError("InvalidRequest", f"Value for {header} header is invalid.")
            if digest(self.body or b"", algorithm) != value:
                raise S3ClientError(
                    "BadDigest",
                    f"The {algorithm} you specified did not match the calculated checksum.",
                )
        _state.checksum = (algorithm, value)
        try:
            status, headers, body = upload_part(self)
        finally:
            _state.checksum = None
        headers[header] = value
        return status, headers, body

    def part_with_checksum(self: Any, part_id: int, value: bytes) -> Any:
        key = set_part(self, part_id, value)
        checksum = getattr(_state, "checksum", None)
        if checksum is not None:
            key.checksum_algorithm, key.checksum_value = checksum
        return key

    def list_parts_with_checksums(self: Any) -> Any:
        multipart = _multipart(self)
        serialized = self.serialized

        def add_checksums(result: Any) -> Any:
            parts = multipart.parts if multipart is not None else {}
            for item in result.result.get("Parts", []):
                part = parts.get(item["PartNumber"])
                if part is not None and part.checksum_algorithm and part.checksum_value:
                    item[f"Checksum{part.checksum_algorithm}"] = part.checksum_value
            return serialized(result)

        self.serialized = add_checksums  # this call only: the instance attribute goes below
        try:
            return list_parts(self)
        finally:
            del self.serialized

    def complete_with_checksums(self: Any, body: bytes) -> Any:
        multipart = _multipart(self)
        required = _required(multipart) if multipart is not None else None
        if multipart is not None and required:
            field = f"Checksum{required}"
            for element in minidom.parseString(body).getElementsByTagName("Part"):
                number = int(_text(element, "PartNumber") or 0)
                given = _text(element, field)
                if not given:
                    raise S3ClientError(
                        "InvalidRequest",
                        f"The upload was created using a {required.lower()} checksum. The "
                        "complete request must include the checksum for each part. It was "
                        f"missing for part {number} in the request.",
                    )
                part = multipart.parts.get(number)
                if part is not None and given != part.checksum_value:
                    raise InvalidPart()
        return complete_body(self, body)

    _patches.set(S3Response, "upload_part", checked_upload_part)
    _patches.set(S3Response, "list_parts", list_parts_with_checksums)
    _patches.set(S3Response, "_complete_multipart_body", complete_with_checksums)
    _patches.set(FakeMultipart, "set_part", part_with_checksum)


def uninstall() -> None:
    """Undo ``install`` (tests that patch moto in their own process)."""
    _patches.undo()
