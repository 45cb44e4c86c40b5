"""Canonical requests at the control plane (docs/PROTOCOL.md, "Canonical requests"):
one spelling per request, so what a route checks is what every layer read.

- A query parameter given twice is refused: API Gateway, Chalice and a share's
  verifier could each take a different copy.
- Control characters in query names or values, and in any text of a JSON body, are
  refused (only a PEM field may hold line breaks).
- A JSON body is strict UTF-8: no other encoding, no byte order mark, no lone
  surrogates.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fsnode_core.errors import InvalidInput

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")
# Body fields that carry PEM text, whose lines end with CR LF or LF.
PEM_FIELDS = frozenset({"csr"})


def check_query(query: Any) -> None:
    """InvalidInput for a repeated parameter or a control character (``query`` is
    Chalice's MultiDict, or None)."""
    if not query:
        return
    for name in query:
        values = query.getlist(name)
        if len(values) > 1:
            raise InvalidInput(f"query parameter {_printable(name)!r} appears more than once",
                               parameter=_printable(name))
        if _CONTROL.search(name) or any(_CONTROL.search(value) for value in values):
            raise InvalidInput("the query has a control character")


def parse_json(raw: bytes) -> Any:
    """A JSON document from strict UTF-8 bytes; InvalidInput naming what is wrong."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise InvalidInput("request body must be UTF-8 JSON without a byte order mark")
    try:
        text = raw.decode("utf-8")  # strict: no other encoding, no encoded surrogates
    except UnicodeDecodeError as exc:
        raise InvalidInput("request body is not valid UTF-8", offset=exc.start) from exc
    try:
        data = json.loads(text)
        # JSON may escape lone UTF-16 surrogates ("\\ud800"), which no store or header
        # can carry: refuse them here rather than fail deep in a write.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError) as exc:  # UnicodeError is a ValueError
        raise InvalidInput("request body is not valid JSON (UTF-8, not nested too deeply)"
                           ) from exc
    check_text(data)
    return data


def check_text(data: Any, field: str = "") -> None:
    """InvalidInput when a string in ``data`` (a key or a value, at any depth) has a
    control character; a PEM field's value may have line breaks."""
    stack: list[tuple[str, Any]] = [(field, data)]
    while stack:
        name, value = stack.pop()
        if isinstance(value, str):
            pattern = _CONTROL_BUT_LINES if name in PEM_FIELDS else _CONTROL
            if pattern.search(value):
                raise InvalidInput(f"{name or 'a value'} has a control character",
                                   field=name)
        elif isinstance(value, dict):
            for key, item in value.items():
                if _CONTROL.search(key):
                    raise InvalidInput("a field name has a control character")
                stack.append((key, item))
        elif isinstance(value, list):
            stack.extend((name, item) for item in value)


def _printable(name: str) -> str:
    return _CONTROL.sub("?", name)[:32]
