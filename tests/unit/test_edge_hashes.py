"""Chunks whose SHA-256 nobody knows yet (an import the control plane has not hashed):
the edge hashes what it reads from the pinned origin object and keeps that digest for
its own checks. It never reports it: edges write no hashes (docs/PROTOCOL.md, "Imports'
hashes"). The cache and manifest store run on a real directory; the published objects
(head, version manifest) are in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from fsnode_core.digests import chunks_digest, join_digests
from fsnode_core.errors import IntegrityError, OriginError, Unavailable
from fsnode_core.published import SOURCE_IMPORT, STATUS_READY, Head, VersionManifest
from fsnode_core.published import Origin as Where

from edge_node.cache import ChunkCache
from edge_node.chunk_hashes import ChunkHashRecorder
from edge_node.manifest import Manifest
from edge_node.manifests import ManifestStore
from tests.unit.edge_cache_fakes import (
    CHUNK,
    DATA,
    Origin,
    config,
    make_manifest,
    read_chunk,
)


def unhashed(manifest: Manifest) -> Manifest:
    """The manifest as an import starts: every chunk's hash unknown."""
    return replace(manifest, chunks=tuple(replace(c, sha256=None) for c in manifest.chunks))


def digest(index: int, data: bytes = DATA) -> str:
    return hashlib.sha256(data[index * CHUNK : (index + 1) * CHUNK]).hexdigest()


class ControlPlane:
    """The published objects of one file (``hashes``: every chunk's, once the control
    plane's hashing job has run; until then its manifest has none)."""

    def __init__(self, manifest: Manifest) -> None:
        self.served = manifest
        self.hashes: list[str] | None = None

    async def head(self, file_id: str) -> Head | None:
        return Head(file_id, self.served.path, STATUS_READY, self.served.version, 1, None, 0)

    async def manifest_of(self) -> VersionManifest:
        m = self.served
        joined = join_digests(self.hashes) if self.hashes else None
        return VersionManifest(
            file_id=m.file_id,
            version=m.version,
            path=m.path,
            size=m.size,
            chunk_size=m.chunk_size,
            content_type=m.content_type,
            etag=m.etag,
            last_modified=m.last_modified,
            source=SOURCE_IMPORT,
            origin=Where(m.bucket, m.key, None, "abc"),
            chunk_sha256=joined,
            chunks_sha256=chunks_digest(joined) if joined else None,
        )

    async def manifest(self, file_id: str, version: str) -> VersionManifest | None:
        return await self.manifest_of()


async def edge(
    tmp_path: Path, origin: Origin, control_plane: ControlPlane
) -> tuple[ChunkCache, ManifestStore]:
    store = ManifestStore(control_plane, 30.0)
    recorder = ChunkHashRecorder(store)
    cache = ChunkCache(tmp_path / "cache", origin, config(), recorder)
    await cache.open()
    return cache, store


def test_manifests_accept_unknown_hashes_but_not_malformed_ones() -> None:
    published = asyncio.run(ControlPlane(make_manifest(DATA)).manifest_of())
    assert Manifest.from_published(published).chunks[0].sha256 is None
    raw = json.loads(published.to_json())
    raw["chunk_sha256"] = "not-a-hash"
    with pytest.raises(OriginError):
        VersionManifest.from_json(json.dumps(raw))


async def test_the_first_fetch_learns_the_hash_and_later_fills_check_it(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    origin = Origin(DATA)
    cache, store = await edge(tmp_path, origin, control_plane)
    manifest = await store.get(control_plane.served.file_id, "1")
    assert manifest.chunks[1].sha256 is None

    assert await read_chunk(cache, manifest, 1) == DATA[CHUNK : 2 * CHUNK]
    assert cache.stats.hashes_learned == 1
    # The store learned it: a later fill checks against it.
    learned = await store.get(manifest.file_id, "1")
    assert learned.chunks[1].sha256 == digest(1)
    assert learned.chunks[0].sha256 is None
    assert await cache.ensure(manifest, 1) == digest(1)  # warm work reports this hash
    await cache.evict_file(manifest.file_id)
    assert await read_chunk(cache, learned, 1) == DATA[CHUNK : 2 * CHUNK]


async def test_an_unhashed_chunk_hashes_itself_and_serves(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    cache, store = await edge(tmp_path, Origin(DATA), control_plane)
    manifest = await store.get(control_plane.served.file_id, "1")
    # Nothing to ask: the bytes come from the pinned origin object and hash themselves.
    assert await read_chunk(cache, manifest, 0) == DATA[:CHUNK]
    assert (await store.get(manifest.file_id, "1")).chunks[0].sha256 == digest(0)
    # Without a recorder at all, an unknown hash still fails closed.
    bare = ChunkCache(tmp_path / "bare", Origin(DATA), config())
    await bare.open()
    with pytest.raises(Unavailable):
        await read_chunk(bare, manifest, 2)


async def test_a_hash_the_job_recorded_is_checked_and_bad_bytes_fetched_again(
    tmp_path: Path,
) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    control_plane.hashes = [digest(i) for i in range(4)]  # the hashing job has run
    origin = Origin(DATA, corrupt_reads=1)  # the first fetch is damaged in transit
    cache, store = await edge(tmp_path, origin, control_plane)
    manifest = await store.get(control_plane.served.file_id, "1")
    with pytest.raises(IntegrityError):
        await read_chunk(cache, manifest, 2)  # readers of the damaged bytes never finish
    assert await cache.ensure(manifest, 2) == digest(2)  # the second fetch matched
    assert origin.reads == 2 and cache.stats.integrity_failures == 1


async def test_bytes_that_never_match_the_recorded_hash_are_not_kept(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    # The record says other bytes (another object) for chunk 1.
    control_plane.hashes = [digest(0), "0" * 64, digest(2), digest(3)]
    origin = Origin(DATA)
    cache, store = await edge(tmp_path, origin, control_plane)
    manifest = await store.get(control_plane.served.file_id, "1")
    with pytest.raises(IntegrityError):
        await cache.ensure(manifest, 1)
    assert origin.reads == 2  # fetched once more, then given up
    assert not cache.contains(manifest, 1)
    await cache.idle()
    assert cache.used_bytes == 0


async def test_learned_hashes_survive_a_manifest_read_without_them(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    cache, store = await edge(tmp_path, Origin(DATA), control_plane)
    manifest = await store.get(control_plane.served.file_id, "1")
    await cache.ensure(manifest, 0)
    # The manifest read again, still without hashes, must not unlearn it.
    store.forget(manifest.file_id)
    await store.learn_hash(manifest.file_id, "1", 0, digest(0))  # nothing kept: a no-op
    again = await store.get(manifest.file_id, "1")
    assert again.chunks[0].sha256 is None
    assert await cache.ensure(again, 0) == digest(0)  # the kept chunk is its own proof
    await store.learn_hash(manifest.file_id, "1", 1, digest(1))
    assert (await store.get(manifest.file_id, "1")).chunks[1].sha256 == digest(1)
    await cache.close()


async def test_a_kept_chunk_whose_hash_the_manifest_lacks_is_settled_at_first_use(
    tmp_path: Path,
) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    cache, _store = await edge(tmp_path, Origin(DATA), control_plane)
    await cache.ensure(control_plane.served, 3)
    await cache.close()
    origin = Origin(DATA)
    cache, _store = await edge(tmp_path, origin, control_plane)
    assert await read_chunk(cache, control_plane.served, 3) == DATA[3 * CHUNK :]
    assert origin.calls == []  # the disk copy was hashed at first use and served
