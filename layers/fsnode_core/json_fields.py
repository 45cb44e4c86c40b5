"""Reading and writing the published JSON objects: compact UTF-8 out, and each field
checked on the way in (a ``ValueError`` names the field; the codec turns it into an
``OriginError``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fsnode_core.errors import OriginError
from fsnode_core.paths import is_valid_path

_ID = re.compile(r"[0-9a-f]{32}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_Parsed = TypeVar("_Parsed")


def dump_json(data: dict[str, Any]) -> bytes:
    """A published object's bytes: compact JSON in UTF-8."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def load_json(raw: bytes | str, what: str) -> dict[str, Any]:
    """A published object as a dict; ``OriginError`` when it is not a JSON object."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OriginError(f"a published {what} is not JSON") from exc
    if not isinstance(data, dict):
        raise OriginError(f"a published {what} is not a JSON object")
    return data


def decode_json(
    raw: bytes | str, what: str, name: str, read: Callable[[dict[str, Any]], _Parsed]
) -> _Parsed:
    """``read`` of the published ``what`` in ``raw``; ``OriginError`` (502) naming ``name``
    when it is not JSON or ``read`` refuses a field."""
    data = load_json(raw, what)
    try:
        return read(data)
    except (ValueError, TypeError) as exc:
        raise OriginError(f"{name} is malformed", reason=str(exc)[:200]) from exc


def object_field(data: Any, name: str) -> Mapping[str, Any]:
    """``data`` itself, refused unless it is an object."""
    if not isinstance(data, dict):
        raise ValueError(f"{name} must be an object")
    return data


def text_field(data: Mapping[str, Any], name: str, *, optional: bool = False) -> Any:
    """A non-empty string field (None when ``optional`` and absent)."""
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def integer_field(data: Mapping[str, Any], name: str, *, optional: bool = False) -> Any:
    """A non-negative integer field, booleans refused (None when ``optional`` and absent)."""
    value = data.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return value


def id_field(data: Mapping[str, Any], name: str) -> str:
    """An id field: 32 lowercase hex characters."""
    value = data.get(name)
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{name} must be 32 lowercase hex characters")
    return value


def digest_field(data: Mapping[str, Any], name: str, *, optional: bool = False) -> Any:
    """A SHA-256 field in lowercase hex (None when ``optional`` and absent)."""
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise ValueError(f"{name} must be a lowercase hex SHA-256")
    return value


def path_field(data: Mapping[str, Any]) -> str:
    """The ``path`` field, a valid file path."""
    value = data.get("path")
    if not is_valid_path(value):
        raise ValueError("path is not a valid path")
    assert isinstance(value, str)
    return value


def choice_field(data: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    """A string field that must be one of ``allowed``."""
    value = data.get(name)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}")
    assert isinstance(value, str)
    return value
