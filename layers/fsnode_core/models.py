"""Typed records for the nodes and chunks tables, with their DynamoDB item layout.

Chunks-table layout (one partition per file, so one Query reads a whole file):
``pk=file#<file_id>`` with ``sk`` = ``meta`` (the file's current version), ``upload``
(a multipart upload in flight, invisible to readers, small whatever the file's size),
``replica#<version>#<block:06d>#<node_id>`` (the chunks of one block a node holds,
as a number set: ``fsnode_core.replica_blocks``; carries ``node_id`` for the ``by_node``
index), ``retired#<version>`` (a replaced version waiting out its grace period) and
``hashes#<version>#<batch:06d>`` (a hashing job's results, briefly). Chunk hashes are
not items: they live in the version's manifest in S3 (``fsnode_core.published``), so
no item count grows with a file's size but replica blocks (one per 4,096 chunks per node).
Ready ``meta`` items carry ``list_pk``/``list_sk`` (path), the keys of the sparse
``by_listing`` index that listings query by path prefix; a ``meta`` item whose
published objects may lag behind it carries ``sync_pk``/``sync_sk`` (``by_sync``).
A path's owner is ``pk=path#<path>``, ``sk=claim``.
Work for an edge lives under ``pk=node#<node_id>``, ``sk=work#<work_id>`` so a
heartbeat reads its node's work with one Query (work ids start with their creation
time, so the oldest come first).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from fsnode_core.ddb import AttributeMap, from_attrs, to_attrs
from fsnode_core.paths import name_of

# ReplicaRecord lives with the block layout; named here too, beside the other records.
from fsnode_core.replica_blocks import ReplicaBlock
from fsnode_core.replica_blocks import ReplicaRecord as ReplicaRecord

# Registered, not placed until it has shown it serves its certificate at its endpoint.
NODE_PENDING = "pending"
NODE_ACTIVE = "active"
# Placed no more; finishes its open streams, then (nothing in flight) is ``drained``.
NODE_DRAINING = "draining"
NODE_DRAINED = "drained"
NODE_DEAD = "dead"
NODE_STATUSES = (NODE_PENDING, NODE_ACTIVE, NODE_DRAINING, NODE_DRAINED, NODE_DEAD)
# Out of the fleet for good: every node route refuses the id (410); a dead node's edge
# registers anew, a drained one's stops. Their replica facts are healed elsewhere.
NODE_RETIRED = frozenset({NODE_DRAINED, NODE_DEAD})

FILE_READY = "ready"
FILE_DELETED = "deleted"
# Tombstoned: shares and manifests answer 410; collected after the grace period.
FILE_DELETING = "deleting"

SOURCE_UPLOAD = "upload"
SOURCE_IMPORT = "import"
# The one partition of the sparse ``by_listing`` index: only ready files carry it.
LISTING_PK = "files"

# An upload's life: being declared, open for parts, being thrown away.
UPLOAD_DECLARING = "declaring"
UPLOAD_OPEN = "open"
UPLOAD_DISCARDING = "discarding"

WORK_WARM = "warm"
WORK_EVICT = "evict"


def file_pk(file_id: str) -> str:
    """Partition key of every item that belongs to one file."""
    return f"file#{file_id}"


def path_pk(path: str) -> str:
    """Partition key of a path's claim."""
    return f"path#{path}"


def retired_sk(version: str) -> str:
    """Sort key of a retired version's collection entry."""
    return f"retired#{version}"


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
    # SHA-256 of the DER leaf last issued to the node: what its endpoint must present.
    certificate_sha256: str | None = None
    # The AWS identity that attested the registration (an assumed-role ARN), if any.
    identity_arn: str | None = None

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
    """A file's metadata item (``sk=meta``): the only item that makes a file visible.

    ``path`` is the file's identity among live files (``fsnode_core.paths``); listings
    show its last segment as ``name``. ``seq`` is the microsecond time of the last
    change the published objects reflect (strictly rising per file: a reader keeps the
    highest head it saw), ``published_seq`` the one at which the current version was
    published (its tree key's seq).
    """

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
    status: str = FILE_READY
    created_at: int = 0
    expires_at: int | None = None
    source: str = SOURCE_UPLOAD
    # S3 object version an import is pinned to (None: unversioned bucket or an upload).
    version_id: str | None = None
    updated_at: int = 0
    # SHA-256 over the raw chunk digests (None: an import not hashed yet).
    chunks_sha256: str | None = None
    seq: int = 0
    published_seq: int = 0

    def to_item(self) -> AttributeMap:
        """The DynamoDB item for this file's metadata (listed by path only while ready)."""
        item = {"pk": file_pk(self.file_id), "sk": "meta", **asdict(self)}
        if self.status == FILE_READY:
            item.update(listing_keys(self.path))
        return to_attrs(item)

    @classmethod
    def from_item(cls, item: AttributeMap) -> FileRecord:
        """Build a record from a ``meta`` item."""
        data = from_attrs(item)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    @property
    def name(self) -> str:
        """What a listing shows: the path's last segment."""
        return name_of(self.path)

    def chunk_count(self) -> int:
        """How many chunks the file has."""
        return math.ceil(self.size / self.chunk_size) if self.size else 0

    def to_api(self) -> dict[str, Any]:
        """The public file record."""
        return {
            "file_id": self.file_id,
            "version": self.version,
            "path": self.path,
            "name": self.name,
            "size": self.size,
            "content_type": self.content_type,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "chunk_size": self.chunk_size,
            "chunks_sha256": self.chunks_sha256,
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


def listing_keys(path: str) -> dict[str, str]:
    """``by_listing`` index keys: ready files in path order (unique among them)."""
    return {"list_pk": LISTING_PK, "list_sk": path}


@dataclass(slots=True)
class PathClaim:
    """Which file a path belongs to: claimed at upload init or import, so two first
    uploads to one new path cannot both create a file; released by the tombstone."""

    path: str
    file_id: str
    created_at: int = 0

    def to_item(self) -> AttributeMap:
        return to_attrs({"pk": path_pk(self.path), "sk": "claim", **asdict(self)})

    @classmethod
    def from_item(cls, item: AttributeMap) -> PathClaim:
        data = from_attrs(item)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


@dataclass(slots=True)
class RetiredVersion:
    """A version no longer current (replaced, or an upload discarded) whose S3 objects
    stay readable until ``due`` (the grace period); then prune collects it."""

    file_id: str
    version: str
    retired_at: int
    due: int

    def to_item(self) -> AttributeMap:
        return to_attrs(
            {"pk": file_pk(self.file_id), "sk": retired_sk(self.version), **asdict(self)}
        )

    @classmethod
    def from_item(cls, item: AttributeMap) -> RetiredVersion:
        data = from_attrs(item)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass(slots=True)
class PendingUpload:
    """A multipart upload between ``POST /files`` and ``/complete``; readers never see it.

    Its declared chunk and part hashes live in S3 (``published.UploadDeclaration``), so
    the ``upload`` item stays small whatever the file's size.
    """

    file_id: str
    version: str
    upload_id: str
    path: str
    size: int
    content_type: str
    chunk_size: int
    bucket: str
    key: str
    created_at: int
    # Until when ``complete`` may finish it; then the sweep discards it.
    expires_at: int
    chunks_sha256: str = ""
    # The version an overwrite replaces: ``complete`` publishes only if it is still current.
    replaces: str | None = None
    # The file's expiry asked for at init, set on the file when ``complete`` publishes it
    # (None: a new file never expires; a new version keeps the file's expiry).
    file_expires_at: int | None = None
    state: str = UPLOAD_OPEN
    # When the last part URL handed out expires: an overwrite's upload is stale after it.
    urls_until: int = 0

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
    chunk_index: int  # a warm's first chunk; -1 for an evict (the whole version)
    task_token: str
    created_at: int
    expires_at: int
    chunks: list[int] = field(default_factory=list)  # a warm's chunks (at most a batch)

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
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    def to_api(self) -> dict[str, Any]:
        """What the edge sees in its heartbeat answer (never the task token)."""
        return {
            "work_id": self.work_id,
            "kind": self.kind,
            "file_id": self.file_id,
            "version": self.version,
            "chunk_index": self.chunk_index,
            "chunks": list(self.chunks),
        }


@dataclass(slots=True)
class FileView:
    """What one Query returns for a file: metadata, upload and replicas."""

    meta: FileRecord | None = None
    upload: PendingUpload | None = None
    replica_blocks: list[ReplicaBlock] = field(default_factory=list)

    @property
    def replicas(self) -> list[ReplicaRecord]:
        """Every replica fact, one per chunk and node (a small file's view; large files
        are read block by block)."""
        return [record for block in self.replica_blocks for record in block.records()]

    def replicas_of(self, version: str) -> list[ReplicaRecord]:
        """One version's replica facts."""
        return [replica for replica in self.replicas if replica.version == version]

    def blocks_of(self, version: str) -> list[ReplicaBlock]:
        """One version's replica blocks."""
        return [block for block in self.replica_blocks if block.version == version]
