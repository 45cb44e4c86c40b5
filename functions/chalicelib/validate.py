"""Small typed readers for request fields: each raises InvalidInput naming the field."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from fsnode_core.errors import InvalidInput

_SHA256 = re.compile(r"[0-9a-f]{64}")
_DECIMAL = re.compile(r"-?[0-9]{1,19}")

# Patterns for text that reaches an HTTP header or an S3 request (the OpenAPI document
# publishes the same ones). A CR or LF there would split a header: refuse it here.
HEADER_TEXT = re.compile(r"[\x20-\x7e]+")  # printable ASCII, spaces allowed
TOKEN_TEXT = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces
ETAG_TEXT = re.compile(r'"?[0-9A-Za-z-]+"?')
NO_CONTROL = re.compile(r"[^\x00-\x1f\x7f]+")  # any text without control characters

# A file's expiry: unix seconds up to 9999-12-31T23:59:59Z. The collection index sorts
# expiries as 12-digit text, so a 13th digit would sort a far expiry before a near one.
MAX_EXPIRES_AT = 253_402_300_799
MAX_EXPIRES_IN = 100 * 365 * 24 * 3600


def string(
    data: Mapping[str, Any],
    name: str,
    *,
    max_len: int = 1024,
    optional: bool = False,
    pattern: re.Pattern[str] | None = None,
) -> str | None:
    """A non-empty string field (matching ``pattern`` whole, when given)."""
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidInput(
            f"{name} must be a non-empty string of at most {max_len} characters", field=name
        )
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidInput(f"{name} has characters it may not have", field=name)
    return value


def integer(
    data: Mapping[str, Any],
    name: str,
    *,
    low: int = 0,
    high: int = 2**62,
    default: int | None = None,
) -> int:
    """An integer field within ``low..high``."""
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer in {low}..{high}", field=name)
    return value


def number(
    data: Mapping[str, Any], name: str, *, low: float, high: float, optional: bool = False
) -> float | None:
    """A finite number field within ``low..high``."""
    value = data.get(name)
    if value is None and optional:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise InvalidInput(f"{name} must be a number in {low}..{high}", field=name)
    return float(value)


def expiry(data: Mapping[str, Any], now: int) -> int | None:
    """A file expiry given as ``expires_at`` (unix seconds, in the future) or as
    ``expires_in_seconds`` (from ``now``); None when neither is given (or both are null)."""
    at, within = data.get("expires_at"), data.get("expires_in_seconds")
    if at is not None and within is not None:
        raise InvalidInput("give expires_at or expires_in_seconds, not both", field="expires_at")
    if within is not None:
        return now + integer(data, "expires_in_seconds", low=1, high=MAX_EXPIRES_IN)
    if at is None:
        return None
    value = integer(data, "expires_at", low=0, high=MAX_EXPIRES_AT)
    if value <= now:
        raise InvalidInput("expires_at must be in the future", field="expires_at", now=now)
    return value


def sha256_list(data: Mapping[str, Any], name: str, count: int) -> list[str]:
    """A list of exactly ``count`` lowercase hex SHA-256 digests."""
    value = data.get(name)
    if not isinstance(value, list) or len(value) != count:
        raise InvalidInput(f"{name} must list {count} SHA-256 digests", field=name, expected=count)
    for position, digest in enumerate(value):
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise InvalidInput(
                f"{name}[{position}] must be 64 lowercase hex characters",
                field=name,
                position=position,
            )
    return list(value)


def query_integer(
    query: Mapping[str, str],
    name: str,
    *,
    low: int = 0,
    high: int = 2**62,
    default: int | None = None,
) -> int | None:
    """A query parameter that must be a plain decimal integer within ``low..high``.

    Stricter than ``int()``, which would take ``" 7"``, ``"+7"`` or ``"1_000"``.
    """
    raw = query.get(name)
    if raw is None:
        return default
    if not _DECIMAL.fullmatch(raw) or not low <= int(raw) <= high:
        raise InvalidInput(f"{name} must be an integer in {low}..{high}", field=name)
    return int(raw)
