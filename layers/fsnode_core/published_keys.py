"""Where the control plane publishes in the origin bucket (docs/PROTOCOL.md, "Published
S3 objects"): the key of every object under ``meta/v1/``, and tree keys parsed back.

- **Version manifest** ``meta/v1/files/{file_id}/v/{version}.json``.
- **Head** ``meta/v1/files/{file_id}/head.json``.
- **Tree key** ``meta/v1/tree/{path}!{seq:016d}.{file_id}.{version}``: an empty object
  per live file. Parsed from the right (a fixed 83-character suffix), so a path needs
  no reserved character; where one path shows several keys, the highest ``seq`` wins.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from fsnode_core.paths import is_under, is_valid_path

META_PREFIX = "meta/v1/"
TREE_PREFIX = META_PREFIX + "tree/"
TREE_SUFFIX = 83  # "!" + 16 digits + "." + 32 hex + "." + 32 hex
_SUFFIX = re.compile(r"!([0-9]{16})\.([0-9a-f]{32})\.([0-9a-f]{32})")


def data_key(file_id: str, version: str) -> str:
    """Where an uploaded version's bytes live in the origin bucket."""
    return f"files/{file_id}/{version}"


def file_meta_prefix(file_id: str) -> str:
    """Every published object of one file (its head and version manifests)."""
    return f"{META_PREFIX}files/{file_id}/"


def version_manifest_key(file_id: str, version: str) -> str:
    """The version manifest (or, before publication, the upload's declaration)."""
    return f"{file_meta_prefix(file_id)}v/{version}.json"


def head_key(file_id: str) -> str:
    """The file's head object."""
    return f"{file_meta_prefix(file_id)}head.json"


def tree_key(path: str, seq: int, file_id: str, version: str) -> str:
    """The tree key that lists a live file under its path."""
    return f"{TREE_PREFIX}{path}!{seq:016d}.{file_id}.{version}"


def tree_folder_prefix(folder: str) -> str:
    """ListObjectsV2 prefix of every live file under ``folder`` (``""``: all)."""
    return TREE_PREFIX + folder


def tree_path_prefix(path: str) -> str:
    """ListObjectsV2 prefix of one path's keys (also ``P!x``'s: filter exact matches)."""
    return f"{TREE_PREFIX}{path}!"


def publish_seq(now: float | None = None) -> int:
    """A publish's ``seq``: microseconds since the epoch (16 digits until 2286)."""
    return int((time.time() if now is None else now) * 1_000_000)


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One tree key, parsed: a live file's path, publish seq, id and current version."""

    path: str
    seq: int
    file_id: str
    version: str

    @property
    def key(self) -> str:
        return tree_key(self.path, self.seq, self.file_id, self.version)


def parse_tree_key(key: str) -> TreeEntry | None:
    """A tree key's fields, read from the right; None when ``key`` is not one."""
    if not key.startswith(TREE_PREFIX) or len(key) <= len(TREE_PREFIX) + TREE_SUFFIX:
        return None
    match = _SUFFIX.fullmatch(key, len(key) - TREE_SUFFIX)
    path = key[len(TREE_PREFIX) : len(key) - TREE_SUFFIX]
    if match is None or not is_valid_path(path):
        return None
    return TreeEntry(
        path=path, seq=int(match.group(1)), file_id=match.group(2), version=match.group(3)
    )


def latest_entries(keys: Iterable[str]) -> dict[str, TreeEntry]:
    """``{path: entry}`` over tree keys, the highest ``seq`` per path (an overwrite caught
    between its PUT and the old key's DELETE shows both); other keys are skipped."""
    out: dict[str, TreeEntry] = {}
    for key in keys:
        entry = parse_tree_key(key)
        if entry is None:
            continue
        known = out.get(entry.path)
        if known is None or (entry.seq, entry.file_id) > (known.seq, known.file_id):
            out[entry.path] = entry
    return out


def parse_tree_page(keys: Iterable[str], folder: str) -> dict[str, TreeEntry]:
    """A folder listing (the keys of ``ListObjectsV2(Prefix=tree_folder_prefix(folder))``,
    one or more pages) as ``{relative path: entry}``; keys outside ``folder`` are skipped."""
    return {
        entry.path[len(folder) :]: entry
        for entry in latest_entries(keys).values()
        if folder == "" or is_under(entry.path, folder)
    }


def resolve_tree(keys: Iterable[str], path: str) -> TreeEntry | None:
    """The live file at exactly ``path`` among the keys of ``tree_path_prefix(path)``."""
    return latest_entries(keys).get(path) if is_valid_path(path) else None
