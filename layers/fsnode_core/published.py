"""The objects the control plane publishes to S3 for edges to read: key layout and JSON
codecs, defined once for both sides (docs/PROTOCOL.md, "Published S3 objects").

Everything lives under ``meta/v1/`` in the origin bucket and is written only by the
control plane; DynamoDB stays the source of truth and these are its projection.

- **Version manifest** ``meta/v1/files/{file_id}/v/{version}.json``: one version's size,
  chunking, origin and chunk hashes. Immutable once the version is published (an
  import's ``chunk_sha256`` goes from null to the hashes once; ``POST
  /files/{id}/rehash`` may replace it). Before an upload completes the same key holds
  its ``UploadDeclaration`` (the hashes its client declared); nothing publishes a
  version whose manifest is not written.
- **Head** ``meta/v1/files/{file_id}/head.json``: the file's current version, status,
  expiry and ``seq`` (microseconds of the publish: a reader keeps the highest it saw).
- **Tree key** ``meta/v1/tree/{path}!{seq:016d}.{file_id}.{version}``: an empty object
  per live file. Parsed from the right (a fixed 83-character suffix), so a path needs
  no reserved character; where one path shows several keys, the highest ``seq`` wins.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fsnode_core.chunks import chunk_count
from fsnode_core.errors import OriginError
from fsnode_core.paths import is_under, is_valid_path

META_PREFIX = "meta/v1/"
TREE_PREFIX = META_PREFIX + "tree/"
FORMAT = 1
SOURCE_UPLOAD = "upload"
SOURCE_IMPORT = "import"
STATUS_READY = "ready"
STATUS_DELETED = "deleted"
DIGEST_HEX = 64  # one SHA-256 in hex
TREE_SUFFIX = 83  # "!" + 16 digits + "." + 32 hex + "." + 32 hex
_SUFFIX = re.compile(r"!([0-9]{16})\.([0-9a-f]{32})\.([0-9a-f]{32})")
_ID = re.compile(r"[0-9a-f]{32}")
_HEX = re.compile(r"(?:[0-9a-f]{64})*")
_DIGEST = re.compile(r"[0-9a-f]{64}")


# Keys --------------------------------------------------------------------------------


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


# Tree listings -------------------------------------------------------------------------


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


# JSON codecs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a version's bytes are: ``version_id``/``etag`` pin an import's reads."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "version_id": self.version_id,
            "etag": self.etag,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Origin:
        fields = _object(data, "origin")
        return cls(
            bucket=_text(fields, "bucket"),
            key=_text(fields, "key"),
            version_id=_text(fields, "version_id", optional=True),
            etag=_text(fields, "etag", optional=True),
        )


@dataclass(frozen=True, slots=True)
class VersionManifest:
    """A published version: what an edge needs to serve it (PROTOCOL "Published S3
    objects" 1). ``chunk_sha256`` is every chunk's SHA-256 in hex, concatenated (None:
    an import not hashed yet)."""

    file_id: str
    version: str
    path: str
    size: int
    chunk_size: int
    content_type: str
    etag: str
    last_modified: int
    source: str
    origin: Origin
    chunk_sha256: str | None
    chunks_sha256: str | None

    def __post_init__(self) -> None:
        _check_hashes(self.chunk_sha256, self.size, self.chunk_size, self.chunks_sha256)

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.size, self.chunk_size)

    def chunk_hash(self, index: int) -> str | None:
        """Chunk ``index``'s SHA-256 (None while unknown); IndexError outside the file."""
        if not 0 <= index < self.chunk_count:
            raise IndexError(f"chunk {index} is outside 0..{self.chunk_count - 1}")
        if self.chunk_sha256 is None:
            return None
        return self.chunk_sha256[index * DIGEST_HEX : (index + 1) * DIGEST_HEX]

    def chunk_hashes(self) -> list[str] | None:
        """Every chunk's SHA-256 in order (None while unknown)."""
        if self.chunk_sha256 is None:
            return None
        return split_digests(self.chunk_sha256)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "file_id": self.file_id,
            "version": self.version,
            "path": self.path,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "content_type": self.content_type,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "source": self.source,
            "origin": self.origin.to_dict(),
            "chunk_sha256": self.chunk_sha256,
            "chunks_sha256": self.chunks_sha256,
        }

    def to_json(self) -> bytes:
        return _dump(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> VersionManifest:
        """Parse and check a version manifest; OriginError (502) when it is malformed or
        is an upload's declaration (never published)."""
        data = _load(raw, "version manifest")
        try:
            if data.get("declared"):
                raise ValueError("an upload's declaration, not a published manifest")
            return cls(
                **_version_fields(data),
                etag=_text(data, "etag"),
                last_modified=_integer(data, "last_modified"),
                source=_choice(data, "source", (SOURCE_UPLOAD, SOURCE_IMPORT)),
                origin=Origin.from_dict(data.get("origin")),
                chunks_sha256=_digest(data, "chunks_sha256", optional=True),
            )
        except (ValueError, TypeError) as exc:
            raise OriginError(
                "a published version manifest is malformed", reason=str(exc)[:200]
            ) from exc


@dataclass(frozen=True, slots=True)
class UploadDeclaration:
    """What an upload declared at ``POST /files``, kept at the version manifest's key
    until ``complete`` replaces it with the manifest: chunk and part SHA-256s (hex,
    concatenated), so no DynamoDB item grows with the file."""

    file_id: str
    version: str
    path: str
    size: int
    chunk_size: int
    content_type: str
    chunk_sha256: str
    part_sha256: str

    def __post_init__(self) -> None:
        _check_hashes(self.chunk_sha256, self.size, self.chunk_size, None)
        if not _HEX.fullmatch(self.part_sha256) or not self.part_sha256:
            raise ValueError("part_sha256 must be SHA-256 digests in hex")

    def part_hashes(self) -> list[str]:
        return split_digests(self.part_sha256)

    def to_json(self) -> bytes:
        return _dump(
            {
                "format": FORMAT,
                "declared": True,
                "file_id": self.file_id,
                "version": self.version,
                "path": self.path,
                "size": self.size,
                "chunk_size": self.chunk_size,
                "content_type": self.content_type,
                "chunk_sha256": self.chunk_sha256,
                "part_sha256": self.part_sha256,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> UploadDeclaration:
        data = _load(raw, "upload declaration")
        try:
            if data.get("declared") is not True:
                raise ValueError("not an upload's declaration")
            fields = _version_fields(data)
            if fields["chunk_sha256"] is None:
                raise ValueError("a declaration carries its chunk hashes")
            return cls(**fields, part_sha256=_text(data, "part_sha256"))
        except (ValueError, TypeError) as exc:
            raise OriginError(
                "an upload's declaration is malformed", reason=str(exc)[:200]
            ) from exc


@dataclass(frozen=True, slots=True)
class Head:
    """A file's head (PROTOCOL "Published S3 objects" 2): ``version`` is the current one
    while ``status`` is ready, None once deleted."""

    file_id: str
    path: str
    status: str
    version: str | None
    seq: int
    expires_at: int | None
    updated_at: int

    def __post_init__(self) -> None:
        if self.status not in (STATUS_READY, STATUS_DELETED):
            raise ValueError(f"unknown head status {self.status!r}")
        if (self.status == STATUS_READY) != (self.version is not None):
            raise ValueError("a ready head names its version; a deleted one none")

    @property
    def ready(self) -> bool:
        return self.status == STATUS_READY

    def serves(self, version: str, now: float | None = None) -> bool:
        """Whether ``version`` may start a response now: current, ready, not expired."""
        moment = time.time() if now is None else now
        return (
            self.ready
            and self.version == version
            and (self.expires_at is None or moment < self.expires_at)
        )

    def to_json(self) -> bytes:
        return _dump(
            {
                "format": FORMAT,
                "file_id": self.file_id,
                "path": self.path,
                "status": self.status,
                "version": self.version,
                "seq": self.seq,
                "expires_at": self.expires_at,
                "updated_at": self.updated_at,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Head:
        data = _load(raw, "head")
        try:
            version = data.get("version")
            return cls(
                file_id=_id(data, "file_id"),
                path=_path(data),
                status=_choice(data, "status", (STATUS_READY, STATUS_DELETED)),
                version=None if version is None else _id(data, "version"),
                seq=_integer(data, "seq"),
                expires_at=_integer(data, "expires_at", optional=True),
                updated_at=_integer(data, "updated_at"),
            )
        except (ValueError, TypeError) as exc:
            raise OriginError("a published head is malformed", reason=str(exc)[:200]) from exc


def entity_tag(file_id: str, version: str, origin_etag: str, size: int) -> str:
    """The strong ``ETag`` every edge (and the folder listing) gives a file version: the
    same on every edge, different for every version (RFC 9110 section 8.8.3)."""
    seed = f"{file_id}\n{version}\n{origin_etag}\n{size}"
    return '"' + hashlib.sha256(seed.encode()).hexdigest()[:32] + '"'


# Digests -------------------------------------------------------------------------------


def join_digests(digests: Iterable[str]) -> str:
    """Hex digests as the one concatenated string the manifest carries."""
    return "".join(digests)


def split_digests(joined: str) -> list[str]:
    return [joined[i : i + DIGEST_HEX] for i in range(0, len(joined), DIGEST_HEX)]


def chunks_digest(chunk_sha256: str | Iterable[str]) -> str:
    """``chunks_sha256``: SHA-256 over the concatenated raw chunk digests (what ``fsnode
    sync`` compares, with the size and chunk size, against a listing)."""
    joined = chunk_sha256 if isinstance(chunk_sha256, str) else join_digests(chunk_sha256)
    return hashlib.sha256(bytes.fromhex(joined)).hexdigest()


# Helpers -------------------------------------------------------------------------------


def _check_hashes(joined: str | None, size: int, chunk_size: int, digest: str | None) -> None:
    if size < 0 or chunk_size <= 0:
        raise ValueError("size must be >= 0 and chunk_size > 0")
    if joined is None:
        return
    if not _HEX.fullmatch(joined) or len(joined) != DIGEST_HEX * chunk_count(size, chunk_size):
        raise ValueError("chunk_sha256 must hold one lowercase hex SHA-256 per chunk")
    if digest is not None and digest != chunks_digest(joined):
        raise ValueError("chunks_sha256 does not match chunk_sha256")


def _version_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    if data.get("format") != FORMAT:
        raise ValueError(f"unknown format {data.get('format')!r}")
    joined = data.get("chunk_sha256")
    if joined is not None and not isinstance(joined, str):
        raise ValueError("chunk_sha256 must be a string or null")
    return {
        "file_id": _id(data, "file_id"),
        "version": _id(data, "version"),
        "path": _path(data),
        "size": _integer(data, "size"),
        "chunk_size": _integer(data, "chunk_size"),
        "content_type": _text(data, "content_type"),
        "chunk_sha256": joined,
    }


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _load(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OriginError(f"a published {what} is not JSON") from exc
    if not isinstance(data, dict):
        raise OriginError(f"a published {what} is not a JSON object")
    return data


def _object(data: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{name} must be an object")
    return data


def _text(data: Mapping[str, Any], name: str, *, optional: bool = False) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _integer(data: Mapping[str, Any], name: str, *, optional: bool = False) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return value


def _id(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{name} must be 32 lowercase hex characters")
    return value


def _digest(data: Mapping[str, Any], name: str, *, optional: bool = False) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise ValueError(f"{name} must be a lowercase hex SHA-256")
    return value


def _path(data: Mapping[str, Any]) -> str:
    value = data.get("path")
    if not is_valid_path(value):
        raise ValueError("path is not a valid path")
    assert isinstance(value, str)
    return value


def _choice(data: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = data.get(name)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}")
    assert isinstance(value, str)
    return value
