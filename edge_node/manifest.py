"""A file version as the edge serves it: size, chunking, validators and each chunk's
SHA-256 (``None`` until known, for an import not hashed yet), built from a published
version manifest or, until that is read, from a version ticket (docs/PROTOCOL.md,
"Edge": version tickets). ``edge_node.manifests`` decides which version may be served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace

from fsnode_core.chunks import chunk_bounds, chunk_count
from fsnode_core.errors import IntegrityError
from fsnode_core.published import SOURCE_IMPORT, VersionManifest
from fsnode_core.published_keys import data_key
from fsnode_core.version_tickets import VersionTicket


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    index: int
    offset: int
    length: int
    # None until someone has hashed the chunk (an imported object): see the module doc.
    sha256: str | None


@dataclass(frozen=True, slots=True)
class Manifest:
    """One published version, as the edge serves it: ``VersionManifest`` with its chunks
    laid out (``fsnode_core.chunks``) and the hashes this edge has learned."""

    file_id: str
    version: str
    path: str
    size: int
    content_type: str
    etag: str
    last_modified: int
    chunk_size: int
    bucket: str
    key: str
    chunks: tuple[ChunkInfo, ...]
    # "upload" (an object at a key only the control plane writes) or "import" (an
    # object someone else owns, which may be replaced under the same key).
    source: str = "upload"
    # The S3 object version an import is pinned to (None: an upload, or no versioning).
    version_id: str | None = None
    # The ETag an import's reads must match (None: an upload, written once).
    pinned_etag: str | None = None
    # Set on a manifest built from a version ticket (``from_ticket``): its chunk
    # hashes are not known yet; calling it starts (or joins) the read of the real
    # manifest, which every chunk is checked against (``confirmed``).
    confirm: Callable[[], Awaitable[Manifest]] | None = field(default=None, compare=False)

    @classmethod
    def from_ticket(
        cls, ticket: VersionTicket, bucket: str, confirm: Callable[[], Awaitable[Manifest]]
    ) -> Manifest:
        """An upload's version as its ticket describes it (control plane tickets are
        minted for uploads only: the data is at ``data_key``), hashes to come."""
        chunks = tuple(
            ChunkInfo(index, *chunk_bounds(index, ticket.size, ticket.chunk_size), None)
            for index in range(chunk_count(ticket.size, ticket.chunk_size))
        )
        return cls(
            file_id=ticket.file_id,
            version=ticket.version,
            path=ticket.path,
            size=ticket.size,
            content_type=ticket.content_type,
            etag=ticket.etag,
            last_modified=ticket.last_modified,
            chunk_size=ticket.chunk_size,
            bucket=bucket,
            key=data_key(ticket.file_id, ticket.version),
            chunks=chunks,
            confirm=confirm,
        )

    def confirmed(self, real: Manifest) -> Manifest:
        """``real`` (the version's manifest, read from S3), once it agrees with what
        this ticket-built one answered with; IntegrityError if it does not."""
        fields: tuple[str, ...] = ("file_id", "version", "path", "size", "etag", "last_modified")
        fields += ("chunk_size", "bucket", "key")
        if any(getattr(self, name) != getattr(real, name) for name in fields):
            raise IntegrityError(
                "the version manifest disagrees with the share's version ticket",
                file_id=self.file_id,
                version=self.version,
            )
        return real

    @classmethod
    def from_published(cls, published: VersionManifest) -> Manifest:
        hashes = published.chunk_hashes()
        chunks = []
        for index in range(chunk_count(published.size, published.chunk_size)):
            offset, length = chunk_bounds(index, published.size, published.chunk_size)
            chunks.append(ChunkInfo(index, offset, length, hashes[index] if hashes else None))
        origin = published.origin
        imported = published.source == SOURCE_IMPORT
        return cls(
            file_id=published.file_id,
            version=published.version,
            path=published.path,
            size=published.size,
            content_type=published.content_type,
            etag=published.etag,
            last_modified=published.last_modified,
            chunk_size=published.chunk_size,
            bucket=origin.bucket,
            key=origin.key,
            chunks=tuple(chunks),
            source=published.source,
            version_id=origin.version_id,
            pinned_etag=(origin.etag or published.etag) if imported else None,
        )

    @property
    def origin_etag(self) -> str | None:
        """The ETag origin reads must match (If-Match), if any. An import's key belongs
        to someone else and may get another object; an upload's key is written once,
        by the control plane, so it needs no check."""
        return self.pinned_etag

    @property
    def hashed(self) -> bool:
        return all(chunk.sha256 is not None for chunk in self.chunks)

    def with_hashes(self, known: Mapping[int, str]) -> Manifest:
        """This manifest with the unknown chunk hashes that ``known`` has filled in."""
        if not any(c.sha256 is None and c.index in known for c in self.chunks):
            return self
        chunks = tuple(
            replace(c, sha256=known[c.index]) if c.sha256 is None and c.index in known else c
            for c in self.chunks
        )
        return replace(self, chunks=chunks)

    def known_hashes(self) -> dict[int, str]:
        return {c.index: c.sha256 for c in self.chunks if c.sha256 is not None}
