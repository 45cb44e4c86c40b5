"""Chunks whose SHA-256 nobody knows yet (an import the control plane has not hashed):
the edge hashes what it reads from the pinned origin object and keeps that digest for
its own checks. It never reports it: edges write no hashes (docs/PROTOCOL.md, "Imports'
hashes"). The cache and manifest store run on a real directory; the control plane is
an in-memory manifest source.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from fsnode_core.errors import IntegrityError, Unavailable

from edge_node.cache import ChunkCache
from edge_node.chunk_hashes import ChunkHashRecorder
from edge_node.manifests import Manifest, ManifestStore
from tests.unit.test_edge_cache import (
    CHUNK,
    DATA,
    Origin,
    config,
    make_manifest,
    read_chunk,
    run_async,
)


def unhashed(manifest: Manifest) -> Manifest:
    """The manifest as an import starts: every chunk's hash unknown."""
    return replace(manifest, chunks=tuple(replace(c, sha256=None) for c in manifest.chunks))


def digest(index: int, data: bytes = DATA) -> str:
    return hashlib.sha256(data[index * CHUNK : (index + 1) * CHUNK]).hexdigest()


class ControlPlane:
    """Manifests only (the hashing job fills ``hashes`` when it has run)."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.hashes: dict[int, str] = {}
        self.up = True

    async def fetch_manifest(self, file_id: str) -> Manifest:
        if not self.up:
            raise Unavailable("control plane down")
        return self.manifest.with_hashes(self.hashes)


async def edge(
    tmp_path: Path, origin: Origin, control_plane: ControlPlane
) -> tuple[ChunkCache, ManifestStore]:
    store = ManifestStore(control_plane, tmp_path)
    recorder = ChunkHashRecorder(store)
    cache = ChunkCache(tmp_path / "cache", origin, config(), recorder)
    await cache.open()
    return cache, store


def test_manifests_accept_unknown_hashes_but_not_malformed_ones() -> None:
    manifest = make_manifest(DATA)
    raw = unhashed(manifest).to_dict()
    assert Manifest.from_dict(raw).chunks[0].sha256 is None
    raw["chunks"][0]["sha256"] = "not-a-hash"
    with pytest.raises(Unavailable):
        Manifest.from_dict(raw)


@run_async
async def test_the_first_fetch_learns_the_hash_and_later_fills_check_it(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    origin = Origin(DATA)
    cache, store = await edge(tmp_path, origin, control_plane)
    manifest = await store.get(control_plane.manifest.file_id, "1")
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


@run_async
async def test_an_unhashed_chunk_serves_while_the_control_plane_is_down(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    cache, store = await edge(tmp_path, Origin(DATA), control_plane)
    manifest = await store.get(control_plane.manifest.file_id, "1")
    control_plane.up = False
    # Nothing to ask: the bytes come from the pinned origin object and hash themselves.
    assert await read_chunk(cache, manifest, 0) == DATA[:CHUNK]
    assert (await store.get(manifest.file_id, "1")).chunks[0].sha256 == digest(0)
    # Without a recorder at all, an unknown hash still fails closed.
    bare = ChunkCache(tmp_path / "bare", Origin(DATA), config())
    await bare.open()
    with pytest.raises(Unavailable):
        await read_chunk(bare, manifest, 2)


@run_async
async def test_a_hash_the_job_recorded_is_checked_and_bad_bytes_fetched_again(
    tmp_path: Path,
) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    control_plane.hashes[2] = digest(2)  # the hashing job has run
    origin = Origin(DATA, corrupt_reads=1)  # the first fetch is damaged in transit
    cache, store = await edge(tmp_path, origin, control_plane)
    manifest = await store.get(control_plane.manifest.file_id, "1")
    with pytest.raises(IntegrityError):
        await read_chunk(cache, manifest, 2)  # readers of the damaged bytes never finish
    assert await cache.ensure(manifest, 2) == digest(2)  # the second fetch matched
    assert origin.reads == 2 and cache.stats.integrity_failures == 1


@run_async
async def test_bytes_that_never_match_the_recorded_hash_are_not_kept(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    control_plane.hashes[1] = "0" * 64  # the record says other bytes (another object)
    origin = Origin(DATA)
    cache, store = await edge(tmp_path, origin, control_plane)
    manifest = await store.get(control_plane.manifest.file_id, "1")
    with pytest.raises(IntegrityError):
        await cache.ensure(manifest, 1)
    assert origin.reads == 2  # fetched once more, then given up
    assert not cache.contains(manifest, 1)
    await cache.idle()
    assert cache.used_bytes == 0


@run_async
async def test_learned_hashes_survive_a_stale_refetch_and_a_restart(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    cache, store = await edge(tmp_path, Origin(DATA), control_plane)
    manifest = await store.get(control_plane.manifest.file_id, "1")
    await cache.ensure(manifest, 0)
    # A manifest answer without the hash (not hashed yet) must not unlearn it.
    refreshed = await store.refresh(manifest.file_id)
    assert refreshed.chunks[0].sha256 == digest(0)
    await cache.close()

    # Restart with the control plane down: the disk copy of the manifest has the hash,
    # and the chunk on disk is checked against it without asking anyone.
    control_plane.up = False
    origin = Origin(DATA)
    cache, store = await edge(tmp_path, origin, control_plane)
    again = await store.get(manifest.file_id, "1")
    assert again.chunks[0].sha256 == digest(0)
    assert await read_chunk(cache, again, 0) == DATA[:CHUNK]
    assert origin.calls == []


@run_async
async def test_a_kept_chunk_whose_hash_the_manifest_lacks_is_settled_at_first_use(
    tmp_path: Path,
) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    cache, _store = await edge(tmp_path, Origin(DATA), control_plane)
    await cache.ensure(control_plane.manifest, 3)
    await cache.close()
    origin = Origin(DATA)
    cache, _store = await edge(tmp_path, origin, control_plane)
    assert await read_chunk(cache, control_plane.manifest, 3) == DATA[3 * CHUNK :]
    assert origin.calls == []  # the disk copy was hashed at first use and served
