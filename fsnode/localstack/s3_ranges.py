"""Ranged S3 GETs in the local stack read only the bytes they ask for.

moto (pinned 5.2.5) answers a GET by reading the whole object out of the key's
buffer (``FakeKey.value``) and only then slicing the Range out of it, so each
ranged GET of a 256 MiB object reads and copies 256 MiB. Real S3 costs what the
range costs; an edge that fetches a chunk as several ranged GETs would otherwise
be measured against moto's copies rather than its own work.

The patch changes where the bytes come from, not what the answer is. While moto's
``get_object`` builds its answer, ``FakeKey.value`` hands out a ``KeyBytes``: a
lazy view of the key's buffer. moto's own Range handling then runs unchanged
(parsing, suffix ranges, ranges past the end, 416, headers) and its slice reads
just those bytes. Whatever does not slice it (no Range, several ranges,
``partNumber``) gets the whole value, read at the end of ``key_response``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fsnode.localstack.moto_patches import Patches

_state = threading.local()  # .lazy: this thread is inside get_object
_patches = Patches()


class KeyBytes:
    """An object's bytes, read from its key's buffer only when sliced."""

    __slots__ = ("_key", "_read_all")

    def __init__(self, key: Any, read_all: Callable[[Any], bytes]) -> None:
        self._key = key  # also keeps the key (and its buffer) alive until answered
        self._read_all = read_all

    def __len__(self) -> int:
        return int(self._key.size)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, item: slice) -> bytes:
        if not isinstance(item, slice):
            raise TypeError("KeyBytes supports slices only")
        start, stop, step = item.indices(len(self))
        if step != 1:
            return self.read_all()[item]
        if stop <= start:
            return b""
        with self._key.lock:  # the buffer's file position is shared: moto locks too
            buffer = self._key._value_buffer
            buffer.seek(start)
            return bytes(buffer.read(stop - start))

    def read_all(self) -> bytes:
        return self._read_all(self._key)


def install() -> None:
    """Patch moto's S3 in this process (idempotent)."""
    if _patches.active:
        return
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    value: property = FakeKey.value  # type: ignore[assignment]
    read_all: Callable[[Any], bytes] = value.fget  # type: ignore[assignment]
    get_object = S3Response.get_object
    key_response = S3Response.key_response

    def lazy_value(key: Any) -> bytes | KeyBytes:
        if getattr(_state, "lazy", False):
            return KeyBytes(key, read_all)
        return read_all(key)

    def lazy_get_object(self: Any) -> Any:
        _state.lazy = True
        try:
            return get_object(self)
        finally:
            _state.lazy = False

    def whole_when_unsliced(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        status, response_headers, body = key_response(self, request, full_url, headers)
        if isinstance(body, KeyBytes):
            body = body.read_all()
        return status, response_headers, body

    _patches.set(FakeKey, "value", property(lazy_value, value.fset))
    _patches.set(S3Response, "get_object", lazy_get_object)
    _patches.set(S3Response, "key_response", whole_when_unsliced)


def uninstall() -> None:
    """Undo ``install`` (tests that patch moto in their own process)."""
    _patches.undo()
