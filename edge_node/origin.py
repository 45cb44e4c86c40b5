"""Origin reads: byte ranges of S3 objects, streamed into a caller's buffer.

The S3 GET itself goes over aiohttp on the event loop, to a presigned URL
(``edge_node.s3_presign``: botocore's credentials and signer, no boto3 client, with
``AWS_ENDPOINT_URL`` honoured as boto3 does), so bytes reach the cache as they
arrive and a slow origin never ties up a worker thread.
Signing is a little CPU (about a millisecond) and runs on the loop while the
credentials are static or not due for a refresh; otherwise in a thread (a refresh may
do I/O). A thread hop on a busy machine costs several times the signing itself, and
a cold request signs before its first origin byte. A URL is reused for a few minutes.

Failures (5xx, 429, resets, short bodies, stalls past the read timeout) are
retried from the first missing byte with capped exponential backoff and full
jitter. The budget counts failures without progress: ``max_attempts`` failed
attempts in a row, or ``budget_seconds`` since the last byte arrived, whichever
comes first; then OriginTimeout (the last failure was a timeout) or OriginError.
Answers retrying cannot fix (403, 404, 412, 416) fail at once.

Reads can be pinned to the object a manifest describes: its S3 version id (an
import from a versioned bucket) and ``If-Match`` its ETag (any import), so an
object replaced under the same key fails (412) instead of being served as the
file: a chunk hashed on first fetch must hash the file's bytes, not a newer object's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from botocore.exceptions import BotoCoreError
from fsnode_core.errors import OriginError, OriginTimeout

from edge_node.s3_presign import S3Presigner

log = logging.getLogger(__name__)

# S3 statuses that retrying cannot fix.
_PERMANENT_STATUS = frozenset({400, 403, 404, 405, 411, 412, 416})
# Presigned URLs live this long; one is reused for a third of it.
_URL_TTL = 900
_URL_REUSE = _URL_TTL / 3


@dataclass(frozen=True, slots=True)
class OriginConfig:
    """Origin limits; see edge_node/README.md (FSNODE_ORIGIN_*)."""

    connections: int = 32
    max_attempts: int = 4
    budget_seconds: float = 30.0
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    base_delay: float = 0.1
    max_delay: float = 2.0


class _Retry(Exception):
    """One attempt failed in a way worth another try."""

    def __init__(self, reason: str, *, timeout: bool = False) -> None:
        super().__init__(reason)
        self.timeout = timeout


@dataclass(frozen=True, slots=True)
class _Pin:
    """Which object a read must see: an S3 version id, an ETag (quoted), or neither."""

    version_id: str | None
    etag: str | None


# A presigned URL's identity: the S3 operation and its parameters.
_UrlName = tuple[str, tuple[tuple[str, str], ...]]


def _object_name(bucket: str, key: str, version_id: str | None) -> _UrlName:
    params = [("Bucket", bucket), ("Key", key)]
    if version_id:
        params.append(("VersionId", version_id))
    return ("get_object", tuple(params))


def _quoted(etag: str) -> str:
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'


@dataclass(slots=True)
class _Cursor:
    """Bytes of the range in place so far (survives a failed attempt: resume there)."""

    got: int = 0


class OriginFetcher:
    """Ranged S3 reads on the event loop, bounded in concurrency, retried within a budget."""

    def __init__(
        self,
        config: OriginConfig | None = None,
        *,
        endpoint_url: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config or OriginConfig()
        # ``endpoint_url``: S3 elsewhere than boto3's variables say (tests' proxies).
        self._presigner = S3Presigner(endpoint_url)
        self._on_bytes = on_bytes
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._urls: dict[_UrlName, tuple[float, str]] = {}
        # Signings in progress: the parts of a cold chunk all wait for the same one.
        self._signing: dict[_UrlName, asyncio.Future[str]] = {}
        # Counters for /metrics.
        self.requests = 0
        self.retries = 0
        self.failures = 0

    async def prepare(self) -> None:
        """Resolve the credentials now (their providers read files), so the first
        request signs at once."""
        await asyncio.to_thread(self._presigner.prepare)

    def _signs_inline(self) -> bool:
        return self._presigner.signs_inline()

    def _http(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        if self._session is None or self._slots is None:
            cfg = self.config
            connector = aiohttp.TCPConnector(limit=cfg.connections, limit_per_host=cfg.connections)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=cfg.connect_timeout, sock_read=cfg.read_timeout
                ),
                auto_decompress=False,
            )
            # Our own limit, so waiting for a slot is never counted as a connect timeout.
            self._slots = asyncio.Semaphore(cfg.connections)
        return self._session, self._slots

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._slots = None

    def _sign(self, name: _UrlName) -> str:
        operation, params = name
        return self._presigner.url(operation, dict(params), _URL_TTL)

    async def _url(self, bucket: str, key: str, version_id: str | None) -> tuple[str, bool]:
        """A presigned GET URL of an object, and whether it was reused rather than signed
        now."""
        return await self._presigned(_object_name(bucket, key, version_id))

    async def _presigned(self, name: _UrlName) -> tuple[str, bool]:
        """A presigned URL for ``name`` (operation and parameters), reused for a while."""
        now = time.monotonic()
        cached = self._urls.get(name)
        if cached is not None and now - cached[0] < _URL_REUSE:
            return cached[1], True
        signing = self._signing.get(name)
        if signing is None and self._signs_inline():
            try:
                url = self._sign(name)
            except BotoCoreError as exc:
                raise OriginError("cannot sign origin requests", reason=str(exc)) from exc
            self._remember(name, now, url)
            return url, False
        if signing is None:
            signing = asyncio.ensure_future(asyncio.to_thread(self._sign, name))
            self._signing[name] = signing
            signing.add_done_callback(lambda done: self._signed(name, now, done))
        try:
            # shield: one part giving up must not cancel the signing the others await.
            return await asyncio.shield(signing), False
        except BotoCoreError as exc:  # no credentials, no region: retrying will not help
            raise OriginError("cannot sign origin requests", reason=str(exc)) from exc

    def _signed(self, name: _UrlName, started: float, done: asyncio.Future[str]) -> None:
        if self._signing.get(name) is done:
            del self._signing[name]
        if done.cancelled() or done.exception() is not None:
            return  # the awaiting parts see the error
        self._remember(name, started, done.result())

    def _remember(self, name: _UrlName, started: float, url: str) -> None:
        if len(self._urls) > 4096:
            self._urls.clear()
        self._urls[name] = (started, url)

    async def fetch(
        self, operation: str, params: dict[str, str], *, max_bytes: int
    ) -> tuple[int, bytes]:
        """One small presigned S3 request (a published object's GET, a ListObjectsV2
        page): ``(status, body)``. 5xx, 429, resets and timeouts are retried within
        the same budget as ranged reads; other statuses are the caller's to judge.
        A body over ``max_bytes`` is an OriginError."""
        name: _UrlName = (operation, tuple(sorted(params.items())))
        failures = 0
        deadline = time.monotonic() + self.config.budget_seconds
        while True:
            self.requests += 1
            try:
                return await self._fetch_once(name, max_bytes)
            except _Retry as exc:
                failure = exc
            failures += 1
            delay = random.uniform(
                0, min(self.config.max_delay, self.config.base_delay * 2 ** (failures - 1))
            )
            if failures >= self.config.max_attempts or time.monotonic() + delay >= deadline:
                self.failures += 1
                if failure.timeout:
                    raise OriginTimeout("the origin did not answer in time", operation=operation)
                raise OriginError(
                    "the origin request failed", operation=operation, reason=str(failure)
                )
            self.retries += 1
            await asyncio.sleep(delay)

    async def _fetch_once(self, name: _UrlName, max_bytes: int) -> tuple[int, bytes]:
        url, reused = await self._presigned(name)
        session, slots = self._http()
        async with slots:
            try:
                async with session.get(url) as answer:
                    if answer.status == 403 and reused:
                        self._urls.pop(name, None)
                        raise _Retry("403 on a reused presigned URL; signing again")
                    if answer.status >= 500 or answer.status == 429:
                        raise _Retry(f"status {answer.status}")
                    body = await answer.content.read(max_bytes + 1)
                    if len(body) > max_bytes:
                        raise OriginError(
                            "an origin answer is larger than expected", limit=max_bytes
                        )
                    return answer.status, body
            except TimeoutError as exc:
                raise _Retry(f"timeout: {exc!r}", timeout=True) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise _Retry(repr(exc)) from exc

    async def read_upto(
        self,
        bucket: str,
        key: str,
        offset: int,
        view: memoryview,
        progress: Callable[[int], None],
    ) -> int:
        """One ranged GET of at most ``len(view)`` bytes from ``offset``, not retried,
        taking a shorter body where the object ends (0 past its end): the bytes read.
        For reads started before the object's size is known (``edge_node.early_reads``)."""
        self.requests += 1
        url, _reused = await self._url(bucket, key, None)
        session, slots = self._http()
        got = 0
        async with slots:
            try:
                headers = {"Range": f"bytes={offset}-{offset + len(view) - 1}"}
                async with session.get(url, headers=headers) as answer:
                    if answer.status == 416:
                        return 0
                    if answer.status != 206 and not (answer.status == 200 and offset == 0):
                        raise OriginError(
                            "the origin refused an early read", status=answer.status, key=key
                        )
                    while got < len(view):
                        block = await answer.content.readany()
                        if not block:
                            break
                        size = min(len(block), len(view) - got)
                        view[got : got + size] = block[:size]
                        got += size
                        if self._on_bytes is not None:
                            self._on_bytes(size)
                        progress(size)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise OriginError("an early read failed", key=key, reason=repr(exc)) from exc
        return got

    async def read_into(
        self,
        bucket: str,
        key: str,
        offset: int,
        view: memoryview,
        progress: Callable[[int], None],
        *,
        version_id: str | None = None,
        etag: str | None = None,
    ) -> None:
        """Fill ``view`` with the object's bytes from ``offset``; ``progress(n)`` after
        each ``n`` new bytes (they are in place, in order, when it is called).
        ``version_id`` and ``etag`` pin the object (see the module docstring)."""
        pin = _Pin(version_id or None, _quoted(etag) if etag else None)
        cursor = _Cursor()
        failures = 0
        deadline = time.monotonic() + self.config.budget_seconds
        while cursor.got < len(view):
            self.requests += 1
            before = cursor.got
            try:
                await self._attempt(bucket, key, pin, offset, view, cursor, progress)
                continue
            except _Retry as exc:
                failure = exc
            if cursor.got > before:
                # Progress: the origin is alive, so the retry budget starts again.
                failures = 0
                deadline = time.monotonic() + self.config.budget_seconds
            failures += 1
            delay = random.uniform(
                0, min(self.config.max_delay, self.config.base_delay * 2 ** (failures - 1))
            )
            if failures >= self.config.max_attempts or time.monotonic() + delay >= deadline:
                self.failures += 1
                log.warning("origin read gave up key=%s after %d tries: %s", key, failures, failure)
                if failure.timeout:
                    raise OriginTimeout("the origin did not answer in time", key=key)
                raise OriginError("the origin read failed", key=key, reason=str(failure))
            self.retries += 1
            log.info("origin read failed, retrying key=%s try=%d: %s", key, failures, failure)
            await asyncio.sleep(delay)

    async def _attempt(
        self,
        bucket: str,
        key: str,
        pin: _Pin,
        offset: int,
        view: memoryview,
        cursor: _Cursor,
        progress: Callable[[int], None],
    ) -> None:
        total = len(view)
        url, reused = await self._url(bucket, key, pin.version_id)
        session, slots = self._http()
        first, last = offset + cursor.got, offset + total - 1
        headers = {"Range": f"bytes={first}-{last}"}
        if pin.etag:
            headers["If-Match"] = pin.etag
        async with slots:
            try:
                async with session.get(url, headers=headers) as answer:
                    if answer.status in _PERMANENT_STATUS:
                        self._urls.pop(_object_name(bucket, key, pin.version_id), None)
                        if answer.status == 403 and reused:
                            # Maybe the reused signature went stale (rotated credentials).
                            raise _Retry("403 on a reused presigned URL; signing again")
                        raise OriginError(
                            "the origin refused the read",
                            bucket=bucket,
                            key=key,
                            status=answer.status,
                        )
                    if answer.status != 206 and not (answer.status == 200 and first == 0):
                        raise _Retry(f"status {answer.status}")
                    while cursor.got < total:
                        block = await answer.content.readany()
                        if not block:
                            raise _Retry(f"short body: {cursor.got} of {total} bytes")
                        got = cursor.got
                        size = min(len(block), total - got)
                        view[got : got + size] = block[:size]
                        cursor.got = got + size
                        if self._on_bytes is not None:
                            self._on_bytes(size)
                        progress(size)
            except TimeoutError as exc:
                raise _Retry(f"timeout: {exc!r}", timeout=True) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise _Retry(repr(exc)) from exc
