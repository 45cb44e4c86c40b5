"""Chunk hashes the edge learns itself: an imported S3 object's chunks have no
SHA-256 until the first edge to fetch one hashes it and records it with the
control plane (``PUT /nodes/{id}/files/{file}/chunks/{index}``, first writer
wins). The cache calls ``settle`` with the digest of the bytes it fetched and
treats them as verified only if the answer is that same digest.

Fail closed: when the control plane cannot be asked, the bytes are not served
(``Unavailable``, 503 or a cut body). Chunks whose hashes are known keep serving
while the control plane is down; only never-hashed chunks wait for it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from fsnode_core.errors import Conflict, FsnodeError, Gone, IntegrityError, NotFound, Unavailable

from edge_node.manifests import Manifest, ManifestStore

log = logging.getLogger(__name__)


class HashRecords(Protocol):
    """The control plane's chunk-hash route (``ControlPlaneClient`` implements it)."""

    async def record_chunk_hash(
        self, file_id: str, version: str, index: int, sha256: str
    ) -> bool: ...


class ChunkHashRecorder:
    """Records first-fetch hashes and keeps them in the manifest store."""

    def __init__(self, records: HashRecords, manifests: ManifestStore) -> None:
        self._records = records
        self._manifests = manifests

    async def settle(self, manifest: Manifest, index: int, sha256: str) -> str:
        """The chunk's hash of record once ``sha256`` has been offered for it.

        ``sha256`` itself when the control plane took it or already had it; the
        other, known hash when it had a different one (the fetched bytes are then
        wrong: the caller fetches again and checks against it). Raises
        IntegrityError when the other hash cannot be learned, NotFound/Gone when
        the chunk is no longer there, Unavailable when the control plane cannot
        be asked.
        """
        file_id, version = manifest.file_id, manifest.version
        try:
            recorded = await self._records.record_chunk_hash(file_id, version, index, sha256)
        except Conflict:
            log.warning(
                "fetched bytes differ from the recorded hash file=%s chunk=%d", file_id, index
            )
            return await self._recorded_hash(manifest, index)
        except (NotFound, Gone, Unavailable):
            raise
        except FsnodeError as exc:
            # 401/403 (a forgotten node re-registers on its next heartbeat), 400: the
            # player cannot fix either; to it this is the control plane not answering.
            raise Unavailable("the chunk hash could not be recorded", reason=str(exc)) from exc
        log.info("chunk hash %s file=%s chunk=%d", "recorded" if recorded else "confirmed",
                 file_id, index)
        await self._manifests.learn_hash(file_id, version, index, sha256)
        return sha256

    async def _recorded_hash(self, manifest: Manifest, index: int) -> str:
        fresh = await self._manifests.refresh(manifest.file_id)
        if fresh.version == manifest.version and 0 <= index < len(fresh.chunks):
            known = fresh.chunks[index].sha256
            if known is not None:
                return known
        raise IntegrityError(
            "the chunk's recorded hash differs and could not be read",
            file_id=manifest.file_id,
            chunk=index,
        )
