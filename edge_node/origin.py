"""Origin reads: one chunk's bytes from S3 with a ranged GET.

boto3 is blocking, so each call runs in a thread; retries use capped exponential
backoff with full jitter inside a total time budget, then raise OriginError or
OriginTimeout. ``AWS_ENDPOINT_URL`` (the local stack's moto) is honoured by boto3.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ReadTimeoutError,
)
from fsnode_core.errors import OriginError, OriginTimeout

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

# S3 answers that retrying cannot fix.
_PERMANENT = frozenset({"NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidRange", "404", "403"})


class OriginFetcher:
    """Ranged reads from S3 with retries within a budget."""

    def __init__(
        self,
        *,
        client: Any | None = None,
        max_attempts: int = 4,
        budget_seconds: float = 30.0,
        base_delay: float = 0.1,
        max_delay: float = 2.0,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self._client = client
        self._client_lock = threading.Lock()
        self._max_attempts = max_attempts
        self._budget = budget_seconds
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._on_bytes = on_bytes
        self.requests = 0

    def _s3(self) -> Any:
        # Built lazily in a worker thread: boto3 session setup reads files.
        with self._client_lock:
            if self._client is None:
                self._client = boto3.session.Session().client(
                    "s3",
                    config=Config(
                        retries={"max_attempts": 1, "mode": "standard"},
                        connect_timeout=5,
                        read_timeout=15,
                        max_pool_connections=64,
                    ),
                )
            return self._client

    async def fetch(self, bucket: str, key: str, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes of ``bucket/key`` from ``offset``."""
        if length <= 0:
            return b""
        deadline = time.monotonic() + self._budget
        last_error: Exception | None = None
        timed_out = False
        for attempt in range(1, self._max_attempts + 1):
            self.requests += 1
            try:
                data = await asyncio.to_thread(self._get, bucket, key, offset, length)
            except (ConnectTimeoutError, ReadTimeoutError, TimeoutError) as exc:
                last_error, timed_out = exc, True
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in _PERMANENT:
                    raise OriginError(
                        "the origin refused the read", bucket=bucket, key=key, code=code
                    ) from exc
                last_error, timed_out = exc, False
            except (BotoCoreError, OSError) as exc:
                last_error, timed_out = exc, False
            else:
                if len(data) == length:
                    if self._on_bytes is not None:
                        self._on_bytes(length)
                    return data
                last_error = OriginError("the origin returned a short read", got=len(data))
                timed_out = False
            delay = random.uniform(0, min(self._max_delay, self._base_delay * 2 ** (attempt - 1)))
            if attempt == self._max_attempts or time.monotonic() + delay >= deadline:
                break
            log.warning(
                "origin read failed, retrying attempt=%d key=%s error=%s", attempt, key, last_error
            )
            await asyncio.sleep(delay)
        if timed_out:
            raise OriginTimeout("the origin did not answer in time", key=key) from last_error
        raise OriginError("the origin read failed", key=key) from last_error

    def _get(self, bucket: str, key: str, offset: int, length: int) -> bytes:
        answer = self._s3().get_object(
            Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}"
        )
        body = answer["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()
