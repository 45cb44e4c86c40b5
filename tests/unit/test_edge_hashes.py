"""Chunks whose SHA-256 nobody knows yet (an imported S3 object): the edge hashes
its first fetch, records the digest (first writer wins), and serves the bytes only
when its digest is the one on record. The cache and manifest store run on a real
directory; the control plane's hash route is an in-memory record with the same rules.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from fsnode_core.errors import Conflict, IntegrityError, Unavailable

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
    """Manifests with the record route's rules: an unknown hash is set by the first
    report; the same hash again answers False; another one is a Conflict."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.hashes: dict[int, str] = {}
        self.reports: list[tuple[int, str]] = []
        self.up = True
        self.gate: asyncio.Event | None = None  # hold record answers until set

    async def fetch_manifest(self, file_id: str) -> Manifest:
        if not self.up:
            raise Unavailable("control plane down")
        return self.manifest.with_hashes(self.hashes)

    async def record_chunk_hash(self, file_id: str, version: str, index: int, sha256: str) -> bool:
        if self.gate is not None:
            await self.gate.wait()
        if not self.up:
            raise Unavailable("control plane down")
        self.reports.append((index, sha256))
        known = self.hashes.get(index)
        if known is None:
            self.hashes[index] = sha256
            return True
        if known != sha256:
            raise Conflict("a different SHA-256 is already recorded")
        return False


async def edge(
    tmp_path: Path, origin: Origin, control_plane: ControlPlane
) -> tuple[ChunkCache, ManifestStore]:
    store = ManifestStore(control_plane, tmp_path)
    recorder = ChunkHashRecorder(control_plane, store)
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
async def test_the_first_fetch_records_the_hash_and_later_fills_check_it(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    origin = Origin(DATA)
    cache, store = await edge(tmp_path, origin, control_plane)
    manifest = await store.get(control_plane.manifest.file_id, "1")
    assert manifest.chunks[1].sha256 is None

    assert await read_chunk(cache, manifest, 1) == DATA[CHUNK : 2 * CHUNK]
    assert control_plane.reports == [(1, digest(1))]
    assert cache.stats.hashes_learned == 1
    # The store learned it: a later fill checks locally and reports nothing.
    learned = await store.get(manifest.file_id, "1")
    assert learned.chunks[1].sha256 == digest(1)
    assert learned.chunks[0].sha256 is None
    assert await cache.ensure(manifest, 1) == digest(1)  # warm work reports this hash
    await cache.evict_file(manifest.file_id)
    assert await read_chunk(cache, learned, 1) == DATA[CHUNK : 2 * CHUNK]
    assert len(control_plane.reports) == 1


@run_async
async def test_a_hash_another_edge_recorded_first_is_matched_not_rewritten(
    tmp_path: Path,
) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    cache, _store = await edge(tmp_path, Origin(DATA), control_plane)
    stale = control_plane.manifest  # read before the other edge's record
    control_plane.hashes[0] = digest(0)
    assert await read_chunk(cache, stale, 0) == DATA[:CHUNK]
    assert await cache.ensure(stale, 0) == digest(0)  # kept, with the hash of record
    assert control_plane.reports == [(0, digest(0))]
    assert control_plane.hashes == {0: digest(0)}


@run_async
async def test_a_conflicting_record_means_bad_bytes_fetched_again_and_checked(
    tmp_path: Path,
) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    origin = Origin(DATA, corrupt_reads=1)  # the first fetch is damaged in transit
    cache, _store = await edge(tmp_path, origin, control_plane)
    stale = control_plane.manifest
    control_plane.hashes[2] = digest(2)  # another edge recorded the right bytes
    with pytest.raises(IntegrityError):
        await read_chunk(cache, stale, 2)  # readers of the damaged bytes never finish
    assert await cache.ensure(stale, 2) == digest(2)  # the second fetch matched
    assert await read_chunk(cache, stale, 2) == DATA[2 * CHUNK : 3 * CHUNK]
    assert origin.reads == 2
    assert cache.stats.integrity_failures == 1
    assert len(control_plane.reports) == 1  # the retry checked against the record


@run_async
async def test_bytes_that_never_match_the_record_fail_and_are_not_kept(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    origin = Origin(DATA)
    cache, _store = await edge(tmp_path, origin, control_plane)
    stale = control_plane.manifest
    control_plane.hashes[1] = "0" * 64  # the record says other bytes (another object)
    with pytest.raises(IntegrityError):
        await cache.ensure(stale, 1)
    assert origin.reads == 2  # fetched once more, then given up
    assert not cache.contains(stale, 1) and not cache.in_memory(stale, 1)
    assert cache.used_bytes == 0


@run_async
async def test_no_control_plane_means_no_unverified_bytes(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    cache, store = await edge(tmp_path, Origin(DATA), control_plane)
    manifest = await store.get(control_plane.manifest.file_id, "1")
    control_plane.up = False
    with pytest.raises(Unavailable):
        await read_chunk(cache, manifest, 0)
    assert not cache.contains(manifest, 0) and not cache.in_memory(manifest, 0)
    # Without a recorder at all, an unknown hash fails closed the same way.
    bare = ChunkCache(tmp_path / "bare", Origin(DATA), config())
    await bare.open()
    with pytest.raises(Unavailable):
        await read_chunk(bare, manifest, 0)


@run_async
async def test_the_last_byte_waits_for_the_record(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    control_plane.gate = asyncio.Event()
    cache, _store = await edge(tmp_path, Origin(DATA), control_plane)
    lease = await cache.acquire(control_plane.manifest, 0)
    await lease.ready(0, CHUNK)
    blocks = lease.blocks(0, CHUNK)
    sent = bytes(await anext(blocks))
    assert sent == DATA[: CHUNK - 1]  # streamed through, all but the held-back byte
    waiting = asyncio.ensure_future(anext(blocks))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # the control plane has not answered yet
    control_plane.gate.set()
    assert bytes(await waiting) == DATA[CHUNK - 1 : CHUNK]
    cache.release(lease)
    # A lone held-back byte is not "ready" before the answer: the status can still fail.
    control_plane.gate = asyncio.Event()
    control_plane.up = False
    one = await cache.acquire(control_plane.manifest, 1)
    control_plane.gate.set()
    with pytest.raises(Unavailable):
        await one.ready(5, 1)
    cache.release(one)


@run_async
async def test_learned_hashes_survive_a_stale_refetch_and_a_restart(tmp_path: Path) -> None:
    control_plane = ControlPlane(unhashed(make_manifest(DATA)))
    cache, store = await edge(tmp_path, Origin(DATA), control_plane)
    manifest = await store.get(control_plane.manifest.file_id, "1")
    await cache.ensure(manifest, 0)
    # A manifest answer read before the record landed must not unlearn the hash.
    control_plane.hashes.clear()
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
    control_plane.hashes.clear()  # as if the record never reached this edge's copy
    origin = Origin(DATA)
    cache, _store = await edge(tmp_path, origin, control_plane)
    assert await read_chunk(cache, control_plane.manifest, 3) == DATA[3 * CHUNK :]
    assert origin.calls == []  # the disk copy was hashed and its hash recorded
    assert control_plane.hashes == {3: digest(3)}
