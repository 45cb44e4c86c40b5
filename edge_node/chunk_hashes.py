"""Chunk hashes the edge learns itself: an imported S3 object's chunks have no SHA-256
until the control plane's hashing job has read the object (docs/PROTOCOL.md, "Imports'
hashes"). Until then this edge hashes what it reads, pinned to the import's version id
or ETag, and keeps that digest for its own cache checks (memory, disk, a restart).

Edges never report hashes to the control plane: no node's word changes what other
nodes serve. A ``warm`` report's digest is checked against S3 by the control plane.
"""

from __future__ import annotations

import logging

from edge_node.manifest import Manifest
from edge_node.manifests import ManifestStore

log = logging.getLogger(__name__)


class ChunkHashRecorder:
    """Keeps first-fetch hashes of unhashed chunks in the manifest store."""

    def __init__(self, manifests: ManifestStore) -> None:
        self._manifests = manifests

    async def settle(self, manifest: Manifest, index: int, sha256: str) -> str:
        """The hash this edge checks chunk ``index`` against from now on: ``sha256``,
        the digest of the bytes it read from the pinned origin object."""
        await self._manifests.learn_hash(manifest.file_id, manifest.version, index, sha256)
        log.info("chunk hash learned file=%s chunk=%d", manifest.file_id, index)
        return sha256
