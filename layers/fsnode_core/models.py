"""Typed records for the nodes and chunks tables, with their DynamoDB item layout.

Chunks-table layout (one partition per file, so one Query reads a whole file):
``pk=file#<file_id>`` with ``sk`` = ``meta`` (the file's current version), ``upload``
(a multipart upload in flight, invisible to readers, small whatever the file's size),
``upload#<version>#parts#<batch:05d>`` (its declared part SHA-256s, a batch per item),
``chunk#<version>#<index:08d>`` and ``replica#<version>#<index:08d>#<node_id>`` (carries
``node_id`` for the ``by_node`` index). Chunk and replica keys name their version, so a
new version's items never overwrite the current one's before ``meta`` switches to it,
and the old version's stay until garbage collection. An upload's chunk items are
written when it is declared: nothing reads a version's chunks before ``meta`` names it.
Ready ``meta`` items carry ``list_pk``/``list_sk``, the keys of the sparse
``by_listing`` index that ``GET /files`` queries.
Work for an edge lives under ``pk=node#<node_id>``, ``sk=work#<work_id>`` so a
heartbeat reads its node's work with one Query.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from fsnode_core.ddb import AttributeMap, from_attrs, to_attrs

NODE_ACTIVE = "active"
NODE_DRAINING = "draining"
NODE_DEAD = "dead"
NODE_STATUSES = (NODE_ACTIVE, NODE_DRAINING, NODE_DEAD)

FILE_READY = "ready"
FILE_DELETED = "deleted"
# Tombstoned: shares and manifests answer 410 while garbage collection runs.
FILE_DELETING = "deleting"

SOURCE_UPLOAD = "upload"
SOURCE_IMPORT = "import"
# The one partition of the sparse ``by_listing`` index: only ready files carry it.
LISTING_PK = "files"

# An upload's life: its hashes being written, open for parts, being thrown away.
UPLOAD_DECLARING = "declaring"
UPLOAD_OPEN = "open"
UPLOAD_DISCARDING = "discarding"

WORK_WARM = "warm"
WORK_EVICT = "evict"


def file_pk(file_id: str) -> str:
    """Partition key of every item that belongs to one file."""
    return f"file#{file_id}"


def chunk_sk(index: int, version: str) -> str:
    """Sort key of chunk ``index`` of ``version`` (zero-padded so keys sort by index)."""
    return f"chunk#{version}#{index:08d}"


def replica_sk(index: int, node_id: str, version: str) -> str:
    """Sort key of the fact "node holds chunk ``index`` of ``version``"."""
    return f"replica#{version}#{index:08d}#{node_id}"


def node_work_pk(node_id: str) -> str:
    """Partition key of one node's pending work."""
    return f"node#{node_id}"


@dataclass(slots=True)
class NodeRecord:
    """One edge node as the nodes table keeps it."""

    node_id: str
    endpoint: str
    region: str
    capacity_bytes: int
    credential_sha256: str
    status: str = NODE_ACTIVE
    lat: float | None = None
    lng: float | None = None
    used_bytes: int = 0
    free_bytes: int = 0
    load: float = 0.0
    last_heartbeat: int = 0
    registered_at: int = 0
    expires_at: int = 0
    certificate_arn: str | None = None
    hot_files: list[str] = field(default_factory=list)

    def is_live(self, now: float, timeout: int) -> bool:
        """Active and heard from within ``timeout`` seconds."""
        return self.status == NODE_ACTIVE and now - self.last_heartbeat <= timeout

    @property
    def location(self) -> tuple[float, float] | None:
        """``(lat, lng)`` when the node declared one."""
        if self.lat is None or self.lng is None:
            return None
        return (self.lat, self.lng)

    def to_item(self) -> AttributeMap:
        """The DynamoDB item for this node."""
        return to_attrs(asdict(self))

    @classmethod
    def from_item(cls, item: AttributeMap) -> NodeRecord:
        """Build a record from a DynamoDB item (unknown attributes are ignored)."""
        data = from_attrs(item)
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["load"] = float(known.get("load", 0.0))
        for name in ("lat", "lng"):
            if known.get(name) is not None:
                known[name] = float(known[name])
        return cls(**known)

    def to_api(self) -> dict[str, Any]:
        """The public view (``GET /nodes``): never the credential hash."""
        return {
            "node_id": self.node_id,
            "endpoint": self.endpoint,
            "status": self.status,
            "region": self.region,
            "lat": self.lat,
            "lng": self.lng,
            "used_bytes": self.used_bytes,
            "free_bytes": self.free_bytes,
            "capacity_bytes": self.capacity_bytes,
            "load": self.load,
            "last_heartbeat": self.last_heartbeat,
        }


@dataclass(slots=True)
class FileRecord:
    """A file's metadata item (``sk=meta``): the only item that makes a file visible."""

    file_id: str
    version: str
    name: str
    size: int
    content_type: str
    etag: str
    last_modified: int
    chunk_size: int
    bucket: str
    key: str
    status: str = FILE_READY
    created_at: int = 0
    expires_at: int | None = None
    source: str = SOURCE_UPLOAD
    # S3 object version an import is pinned to (None: unversioned bucket or an upload).
    version_id: str | None = None
    updated_at: int = 0

    def to_item(self) -> AttributeMap:
        """The DynamoDB item for this file's metadata (listed only while ready)."""
        item = {"pk": file_pk(self.file_id), "sk": "meta", **asdict(self)}
        if self.status == FILE_READY:
            item.update(listing_keys(self.file_id, self.created_at))
        return to_attrs(item)

    @classmethod
    def from_item(cls, item: AttributeMap) -> FileRecord:
        """Build a record from a ``meta`` item."""
        data = from_attrs(item)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    def chunk_count(self) -> int:
        """How many chunks the file has."""
        return math.ceil(self.size / self.chunk_size) if self.size else 0

    def to_api(self) -> dict[str, Any]:
        """The public file record."""
        return {
            "file_id": self.file_id,
            "version": self.version,
            "name": self.name,
            "size": self.size,
            "content_type": self.content_type,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "chunk_size": self.chunk_size,
            "bucket": self.bucket,
            "key": self.key,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at or self.created_at,
            "source": self.source,
            "version_id": self.version_id,
            # Unix seconds after which prune collects the file (None: kept until deleted).
            "expires_at": self.expires_at,
        }


def listing_keys(file_id: str, created_at: int) -> dict[str, str]:
    """``by_listing`` index keys: files in creation order, ties broken by id."""
    return {"list_pk": LISTING_PK, "list_sk": f"{created_at:012d}#{file_id}"}


@dataclass(slots=True)
class ChunkRecord:
    """One chunk of one file version: where it sits and what its bytes hash to."""

    file_id: str
    version: str
    index: int
    offset: int
    length: int
    # None until known: an imported object's chunks are hashed by the first edge to fetch.
    sha256: str | None

    def to_item(self) -> AttributeMap:
        """The DynamoDB item for this chunk (no ``sha256`` attribute while unknown)."""
        return to_attrs({"pk": file_pk(self.file_id), "sk": chunk_sk(self.index, self.version),
                         **asdict(self)})

    @classmethod
    def from_item(cls, item: AttributeMap) -> ChunkRecord:
        """Build a record from a ``chunk#`` item."""
        data = from_attrs(item)
        data.setdefault("sha256", None)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def to_api(self) -> dict[str, Any]:
        """The manifest entry for this chunk."""
        return {"index": self.index, "offset": self.offset, "length": self.length,
                "sha256": self.sha256}


@dataclass(slots=True)
class ReplicaRecord:
    """The fact that ``node_id`` holds chunk ``index`` of ``version``."""

    file_id: str
    version: str
    index: int
    node_id: str
    created_at: int

    def to_item(self) -> AttributeMap:
        """The DynamoDB item (``node_id`` feeds the ``by_node`` index)."""
        return to_attrs(
            {"pk": file_pk(self.file_id),
             "sk": replica_sk(self.index, self.node_id, self.version), **asdict(self)}
        )

    @classmethod
    def from_item(cls, item: AttributeMap) -> ReplicaRecord:
        """Build a record from a ``replica#`` item."""
        data = from_attrs(item)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass(slots=True)
class PendingUpload:
    """A multipart upload between ``POST /files`` and ``/complete``; readers never see it.

    Its declared hashes live in items of their own (chunk items of its version, part
    batches), so the ``upload`` item stays small whatever the file's size.
    """

    file_id: str
    version: str
    upload_id: str
    name: str
    size: int
    content_type: str
    chunk_size: int
    bucket: str
    key: str
    created_at: int
    # Until when ``complete`` may finish it; then the sweep discards it.
    expires_at: int
    # The version an overwrite replaces: ``complete`` publishes only if it is still current.
    replaces: str | None = None
    # SHA-256 (hex) of each multipart part, as declared: S3 checks each part's bytes
    # against it and ``complete`` checks ListParts against it. Kept in the part batch
    # items (read back with the upload); inline only on an item written before them,
    # and empty on one written before parts were declared.
    part_sha256: list[str] = field(default_factory=list)
    # The file's expiry asked for at init, set on the file when ``complete`` publishes it
    # (None: a new file never expires; a new version keeps the file's expiry).
    file_expires_at: int | None = None
    state: str = UPLOAD_OPEN
    # When the last part URL handed out expires: an overwrite's upload is stale after it.
    urls_until: int = 0
    # Chunk SHA-256s inline: only on an item written before chunk items were written at
    # init (``complete`` then writes the chunk items itself).
    chunk_sha256: list[str] = field(default_factory=list)

    def to_item(self) -> AttributeMap:
        """The DynamoDB item for this upload."""
        return to_attrs({"pk": file_pk(self.file_id), "sk": "upload", **asdict(self)})

    @classmethod
    def from_item(cls, item: AttributeMap) -> PendingUpload:
        """Build a record from an ``upload`` item."""
        data = from_attrs(item)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


@dataclass(slots=True)
class WorkItem:
    """A command waiting for an edge to pull it, with the Step Functions task token."""

    node_id: str
    work_id: str
    kind: str
    file_id: str
    version: str
    chunk_index: int
    task_token: str
    created_at: int
    expires_at: int

    def to_item(self) -> AttributeMap:
        """The DynamoDB item (no ``node_id`` attribute: work is not a replica)."""
        data = asdict(self)
        data["target_node"] = data.pop("node_id")
        return to_attrs({"pk": node_work_pk(self.node_id), "sk": f"work#{self.work_id}", **data})

    @classmethod
    def from_item(cls, item: AttributeMap) -> WorkItem:
        """Build a record from a ``work#`` item."""
        data = from_attrs(item)
        data["node_id"] = data.pop("target_node")
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def to_api(self) -> dict[str, Any]:
        """What the edge sees in its heartbeat answer (never the task token)."""
        return {"work_id": self.work_id, "kind": self.kind, "file_id": self.file_id,
                "version": self.version, "chunk_index": self.chunk_index}


@dataclass(slots=True)
class FileView:
    """Everything one Query returns for a file: metadata, chunks, replicas, upload."""

    meta: FileRecord | None = None
    upload: PendingUpload | None = None
    chunks: list[ChunkRecord] = field(default_factory=list)
    replicas: list[ReplicaRecord] = field(default_factory=list)

    def chunks_of(self, version: str) -> list[ChunkRecord]:
        """One version's chunks, by index (an old version lingers until GC)."""
        return [chunk for chunk in self.chunks if chunk.version == version]

    def replicas_of(self, version: str) -> list[ReplicaRecord]:
        """One version's replica facts."""
        return [replica for replica in self.replicas if replica.version == version]

    def current_chunks(self) -> list[ChunkRecord]:
        """The chunks of the version ``meta`` names (none without ``meta``)."""
        return self.chunks_of(self.meta.version) if self.meta is not None else []
