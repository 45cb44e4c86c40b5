"""File paths: the one validator every part uses (control plane, CLI, edge).

A path names a live file the way an S3 key names an object: UTF-8, 1..900 bytes,
segments split by ``/``. No empty segment (so no leading or trailing ``/`` and no
``//``), no ``.`` or ``..`` segment, no control character (C0, DEL, C1), no
backslash. A folder is a path followed by ``/``; ``""`` is the folder of everything.

900 bytes leaves room under DynamoDB's 1024-byte index sort key (listing by path) and
S3's 1024-byte key (``meta/v1/tree/{path}!{83-character suffix}``).

URL paths: a file's path travels in a URL one segment at a time, percent-encoded
(``url_path``). ``from_url_path`` decodes exactly once and refuses what could be
read two ways: an encoded ``/`` or ``\\`` (``%2F``, ``%5C``), a malformed escape,
bytes that are not UTF-8; the result must then pass the path rules, so ``..`` and
``.`` are refused however they were spelled.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from fsnode_core.errors import InvalidInput

MAX_PATH_BYTES = 900
# C0 controls, DEL, C1 controls, and the backslash (a separator to some clients).
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# Characters a URL path segment may carry as they are (RFC 3986 unreserved, plus a few
# sub-delims players leave alone); everything else is percent-encoded.
_SEGMENT_SAFE = "-._~!$&'()*+,;=:@"


def path_problem(value: object) -> str | None:
    """Why ``value`` is not a valid file path (None when it is one)."""
    if not isinstance(value, str) or not value:
        return "a path is a non-empty string"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "a path must be valid UTF-8 (no lone surrogates)"
    if size > MAX_PATH_BYTES:
        return f"a path is at most {MAX_PATH_BYTES} bytes of UTF-8"
    if _FORBIDDEN.search(value):
        return "a path has no control characters and no backslash"
    for segment in value.split("/"):
        if not segment:
            return "a path has no empty segment (no leading, trailing or double '/')"
        if segment in (".", ".."):
            return "a path has no '.' or '..' segment"
    return None


def is_valid_path(value: object) -> bool:
    """Whether ``value`` is a valid file path."""
    return path_problem(value) is None


def check_path(value: object, what: str = "path") -> str:
    """``value`` if it is a valid file path, else InvalidInput naming ``what``."""
    problem = path_problem(value)
    if problem is not None:
        raise InvalidInput(f"{what} is not a valid path: {problem}", field=what)
    assert isinstance(value, str)
    return value


def folder_problem(value: object) -> str | None:
    """Why ``value`` is not a folder (a path followed by ``/``, or ``""``)."""
    if value == "":
        return None
    if not isinstance(value, str) or not value.endswith("/"):
        return "a folder is a path followed by '/' (or '' for everything)"
    return path_problem(value[:-1])


def check_folder(value: object, what: str = "prefix") -> str:
    """``value`` if it is a folder, else InvalidInput naming ``what``."""
    problem = folder_problem(value)
    if problem is not None:
        raise InvalidInput(f"{what} is not a valid folder: {problem}", field=what)
    assert isinstance(value, str)
    return value


def listing_prefix_problem(value: object) -> str | None:
    """Why ``value`` cannot start paths: a listing prefix is any start of a valid path
    (``media/tr`` lists ``media/trailer/...``), so only the characters are checked."""
    if not isinstance(value, str):
        return "a prefix is a string"
    if value == "":
        return None
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "a prefix must be valid UTF-8"
    if size > MAX_PATH_BYTES:
        return f"a prefix is at most {MAX_PATH_BYTES} bytes of UTF-8"
    if _FORBIDDEN.search(value):
        return "a prefix has no control characters and no backslash"
    return None


def name_of(path: str) -> str:
    """The last segment: what a listing shows as the file's name."""
    return path.rsplit("/", 1)[-1]


def is_under(path: str, folder: str) -> bool:
    """Whether ``path`` lies in ``folder`` (by whole segments: ``a/b/`` does not hold
    ``a/bc``, because a folder ends with ``/``)."""
    return path.startswith(folder) and len(path) > len(folder)


def relative_to(path: str, folder: str) -> str:
    """``path`` without its ``folder``; ValueError when it is not under it."""
    if not is_under(path, folder):
        raise ValueError(f"{path!r} is not under {folder!r}")
    return path[len(folder) :]


def url_path(path: str) -> str:
    """``path`` (or a folder) percent-encoded segment by segment for a URL; the ``/``
    between segments stays."""
    return "/".join(quote(segment, safe=_SEGMENT_SAFE) for segment in path.split("/"))


def from_url_path(raw: str) -> str:
    """The text a raw (still percent-encoded) URL path stands for, decoded once.

    InvalidInput for an encoded ``/`` or ``\\``, a ``%`` that starts no escape, or
    bytes that are not UTF-8. The caller checks the result with the path rules.
    """
    if _ESCAPE.sub("", raw).count("%"):
        raise InvalidInput("the URL path has a malformed percent escape", field="path")
    out = bytearray()
    position = 0
    for match in _ESCAPE.finditer(raw):
        out += raw[position : match.start()].encode("utf-8", "surrogatepass")
        byte = int(match.group(1), 16)
        if byte in (0x2F, 0x5C):
            raise InvalidInput("the URL path has an encoded '/' or '\\'", field="path")
        out.append(byte)
        position = match.end()
    out += raw[position:].encode("utf-8", "surrogatepass")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("the URL path is not UTF-8", field="path") from exc
