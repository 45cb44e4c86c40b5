"""Conditional S3 writes in the local stack hold as S3's do when writers race.

S3 (PutObject, CompleteMultipartUpload; "How to prevent object overwrites with
conditional writes") checks ``If-Match: <etag>`` and ``If-None-Match: *`` against the
object as the write lands: of two writers that matched the same ETag, or found the key
absent, one succeeds and the other is refused (``412 PreconditionFailed``, or ``409
ConditionalRequestConflict`` while both are in flight). fsnode relies on that: a file's
head is replaced only if unchanged since it was read (``chalicelib.heads``).

moto (pinned 5.2.5) answers each condition as S3 does on its own (412
``PreconditionFailed`` with S3's XML error body and ``<Condition>``, ETags compared with
or without their quotes, ``404 NoSuchKey`` for ``If-Match`` on a missing key), but it
checks and then writes as two steps with no lock between them, and its server answers
requests in threads: two conditional PUTs racing for one key can both pass the check
and both write, which S3 never allows. This patch makes each object write (PutObject,
CopyObject, DeleteObject, CompleteMultipartUpload) one step per key: writers of the
same key go one at a time, so the later one's condition is checked against what the
earlier one wrote (a 412, one of the answers S3 gives such a writer). Writers of other
keys, and UploadPart, are not held up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fsnode.localstack.moto_patches import Patches

_patches = Patches()


class KeyLocks:
    """One lock per (bucket, key) being written, dropped when nobody holds or waits."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, bucket: str, key: str) -> Iterator[None]:
        name = (bucket, key)
        with self._guard:
            lock, users = self._locks.get(name, (threading.Lock(), 0))
            self._locks[name] = (lock, users + 1)
        try:
            with self.acquired(lock):
                yield
        finally:
            with self._guard:
                lock, users = self._locks[name]
                if users == 1:
                    del self._locks[name]
                else:
                    self._locks[name] = (lock, users - 1)

    @contextmanager
    def acquired(self, lock: threading.Lock) -> Iterator[None]:
        """``lock``, held (a seam the tests use to see a writer wait)."""
        with lock:
            yield

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


locks = KeyLocks()


def install() -> None:
    """Patch moto's S3 in this process (idempotent)."""
    if _patches.active:
        return
    from moto.s3.responses import S3Response

    def one_at_a_time(method: Callable[..., Any]) -> Callable[..., Any]:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            with locks.hold(self.bucket_name, self.parse_key_name()):
                return method(self, *args, **kwargs)

        return write

    complete = S3Response._key_response_post

    def post(
        self: Any, request: Any, body: bytes, bucket_name: str, query: Any, key_name: str
    ) -> Any:
        if not query.get("uploadId"):  # CreateMultipartUpload, restore: no object written
            return complete(self, request, body, bucket_name, query, key_name)
        with locks.hold(bucket_name, key_name):
            return complete(self, request, body, bucket_name, query, key_name)

    for name in ("put_object", "copy_object", "delete_object"):
        _patches.set(S3Response, name, one_at_a_time(getattr(S3Response, name)))
    _patches.set(S3Response, "_key_response_post", post)


def uninstall() -> None:
    """Undo ``install`` (tests that patch moto in their own process)."""
    _patches.undo()
