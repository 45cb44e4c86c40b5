"""The objects the control plane publishes to S3 for edges to read: their JSON codecs,
defined once for both sides (docs/PROTOCOL.md, "Published S3 objects"). Their keys are
in ``published_keys``, their digests in ``digests``, the field checks in ``json_fields``.

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

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fsnode_core.chunks import chunk_count
from fsnode_core.digests import DIGEST_HEX, chunks_digest, split_digests
from fsnode_core.json_fields import (
    choice_field,
    decode_json,
    digest_field,
    dump_json,
    id_field,
    integer_field,
    object_field,
    path_field,
    text_field,
)

FORMAT = 1
SOURCE_UPLOAD = "upload"
SOURCE_IMPORT = "import"
STATUS_READY = "ready"
STATUS_DELETED = "deleted"
_HEX = re.compile(r"(?:[0-9a-f]{64})*")


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
        fields = object_field(data, "origin")
        return cls(
            bucket=text_field(fields, "bucket"),
            key=text_field(fields, "key"),
            version_id=text_field(fields, "version_id", optional=True),
            etag=text_field(fields, "etag", optional=True),
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
        return dump_json(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> VersionManifest:
        """Parse and check a version manifest; OriginError (502) when it is malformed or
        is an upload's declaration (never published)."""
        return decode_json(raw, "version manifest", "a published version manifest", cls._read)

    @classmethod
    def _read(cls, data: Mapping[str, Any]) -> VersionManifest:
        if data.get("declared"):
            raise ValueError("an upload's declaration, not a published manifest")
        return cls(
            **_version_fields(data),
            etag=text_field(data, "etag"),
            last_modified=integer_field(data, "last_modified"),
            source=choice_field(data, "source", (SOURCE_UPLOAD, SOURCE_IMPORT)),
            origin=Origin.from_dict(data.get("origin")),
            chunks_sha256=digest_field(data, "chunks_sha256", optional=True),
        )


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
        return dump_json(
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
        return decode_json(raw, "upload declaration", "an upload's declaration", cls._read)

    @classmethod
    def _read(cls, data: Mapping[str, Any]) -> UploadDeclaration:
        if data.get("declared") is not True:
            raise ValueError("not an upload's declaration")
        fields = _version_fields(data)
        if fields["chunk_sha256"] is None:
            raise ValueError("a declaration carries its chunk hashes")
        return cls(**fields, part_sha256=text_field(data, "part_sha256"))


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
        return dump_json(
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
        return decode_json(raw, "head", "a published head", cls._read)

    @classmethod
    def _read(cls, data: Mapping[str, Any]) -> Head:
        version = data.get("version")
        return cls(
            file_id=id_field(data, "file_id"),
            path=path_field(data),
            status=choice_field(data, "status", (STATUS_READY, STATUS_DELETED)),
            version=None if version is None else id_field(data, "version"),
            seq=integer_field(data, "seq"),
            expires_at=integer_field(data, "expires_at", optional=True),
            updated_at=integer_field(data, "updated_at"),
        )


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
        "file_id": id_field(data, "file_id"),
        "version": id_field(data, "version"),
        "path": path_field(data),
        "size": integer_field(data, "size"),
        "chunk_size": integer_field(data, "chunk_size"),
        "content_type": text_field(data, "content_type"),
        "chunk_sha256": joined,
    }
