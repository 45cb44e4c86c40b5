"""Conditional requests (RFC 9110 section 13) against one file version's validators: the
strong ETag every edge gives the version (``fsnode_core.digests.entity_tag``) and its
Last-Modified.

Evaluated in the RFC's order (section 13.2.2): ``If-Match`` (else
``If-Unmodified-Since``) failing is 412, as S3 answers; then ``If-None-Match`` (else
``If-Modified-Since``) holding is 304; ``If-Range`` only decides whether ``Range`` is
honoured (``range_applies``). A client that began on one version and sends ``If-Match``
with its ETag therefore never gets another version's bytes.
"""

from __future__ import annotations

import calendar
import email.utils
import functools
from collections.abc import Mapping
from dataclasses import dataclass

from fsnode_core.digests import entity_tag
from fsnode_core.errors import PreconditionFailed


@dataclass(frozen=True, slots=True)
class Validators:
    """A version's ``ETag`` (strong, quoted) and Last-Modified (unix seconds, and as
    the header's text)."""

    etag: str
    last_modified: int
    last_modified_text: str


@functools.lru_cache(maxsize=4096)
def validators(
    file_id: str, version: str, origin_etag: str, size: int, last_modified: int
) -> Validators:
    """A version's validators, made once per version, not per request."""
    return Validators(
        entity_tag(file_id, version, origin_etag, size),
        last_modified,
        email.utils.formatdate(last_modified, usegmt=True),
    )


def not_modified(method: str, headers: Mapping[str, str], current: Validators) -> bool:
    """Whether to answer 304; PreconditionFailed (412) when If-Match or
    If-Unmodified-Since fails."""
    if_match = headers.get("If-Match")
    if if_match is not None:
        # Section 13.1.1: strong comparison; "*" matches any current representation.
        tags = _tags(if_match)
        if "*" not in tags and current.etag not in tags:
            raise PreconditionFailed(
                "If-Match does not match the current version", etag=current.etag
            )
    else:
        since = headers.get("If-Unmodified-Since")
        date = http_date(since) if since is not None else None
        if date is not None and current.last_modified > date:
            raise PreconditionFailed(
                "the file was modified after If-Unmodified-Since", etag=current.etag
            )
    if method not in ("GET", "HEAD"):
        return False
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        # Section 13.1.2: weak comparison.
        wanted = {tag.removeprefix("W/") for tag in _tags(if_none_match)}
        return "*" in wanted or current.etag in wanted
    since = headers.get("If-Modified-Since")
    if since is not None:
        date = http_date(since)
        return date is not None and current.last_modified <= date
    return False


def range_applies(headers: Mapping[str, str], current: Validators) -> bool:
    """Section 13.1.5: without If-Range, or when it holds (a strong ETag match, or a date
    equal to Last-Modified), Range is honoured; otherwise the whole file is sent."""
    value = headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == current.etag
    date = http_date(value)
    return date is not None and date == current.last_modified


def http_date(value: str) -> int | None:
    """An HTTP date as unix seconds (None when it is not one)."""
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    offset = parsed[9] or 0
    return calendar.timegm((*parsed[:6], 0, 0, 0)) - offset


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]
