"""A file's head is written so that it never goes back to an older ``seq``
(docs/PROTOCOL.md, "Write order and repair").

Several writers publish one file's head: the request handler that made a change, the
``publish_file`` Lambda and prune (``publisher.settle``), each with what it read from
DynamoDB a moment before. A slow writer holding an older state (ready at ``seq`` N)
must not overwrite a newer one (deleted at N+1): edges would serve the deleted file
again until a later settle. So the head is read first (keeping its ETag) and replaced
only if it is older, with S3's conditional writes: ``If-Match: <etag>`` (only while
unchanged) or ``If-None-Match: *`` (only while absent). A writer that raced answers
``412 PreconditionFailed`` (or ``409 ConditionalRequestConflict``, writes in flight
together; ``404 NoSuchKey`` when the head it matched was deleted); the head is then
read again and compared again, a bounded number of times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from fsnode_core.errors import FsnodeError, Unavailable
from fsnode_core.published import Head
from fsnode_core.published_keys import head_key

HEAD_ATTEMPTS = 5
# A conditional PUT lost to another writer: read the head again and compare again.
_RACED = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})
# A GET of a missing key: 404 with s3:ListBucket on the bucket, else 403 (S3 does not
# tell a caller without it whether the key exists; publish_file and prune may list tree
# keys only). Either way the head is created only if absent.
_MAYBE_ABSENT = frozenset({"NoSuchKey", "AccessDenied"})
_UNREADABLE = -1  # a head that does not parse is older than any state: replaced


@dataclass(frozen=True, slots=True)
class Published:
    """The head in S3 as read: its ``seq`` and the ETag a replacement must match."""

    seq: int
    etag: str


def put_head(s3: Any, bucket: str, head: Head) -> bool:
    """Publish ``head`` unless S3 holds one as new or newer. True when ``head`` is the
    published state now (written, or already there at its ``seq``); False when a newer
    one is (``head`` is stale: its writer publishes nothing more of it).
    ``Unavailable`` when every attempt lost a race; ``ClientError`` as S3 answers."""
    key = head_key(head.file_id)
    body = head.to_json()
    for _ in range(HEAD_ATTEMPTS):
        denied = False
        try:
            current: Published | None = _read(s3, bucket, key)
        except ClientError as exc:
            if _code(exc) not in _MAYBE_ABSENT:
                raise
            current, denied = None, _code(exc) == "AccessDenied"
        if current is not None and current.seq >= head.seq:
            return current.seq == head.seq
        condition = {"IfNoneMatch": "*"} if current is None else {"IfMatch": current.etag}
        try:
            s3.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType="application/json", **condition
            )
            return True
        except ClientError as exc:
            if _code(exc) not in _RACED:
                raise
            if denied:
                # It exists, and this role may not read it: a missing s3:GetObject grant.
                raise Unavailable(
                    "the head exists but cannot be read to compare", file_id=head.file_id
                ) from exc
    raise Unavailable(
        "the head kept changing while it was published; the publisher retries",
        file_id=head.file_id,
    )


def _read(s3: Any, bucket: str, key: str) -> Published:
    answer = s3.get_object(Bucket=bucket, Key=key)
    raw = answer["Body"].read()
    try:
        seq = Head.from_json(raw).seq
    except FsnodeError:
        seq = _UNREADABLE
    return Published(seq=seq, etag=str(answer["ETag"]))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
