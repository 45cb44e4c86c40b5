"""Playlist prefetch (edge_node.prefetch): its global cap (however many playlists are
served at once, at most ``concurrency`` segment fills run), and its order (each
reference resolved, its first bytes started, while the one before it fills; no later
one ahead of it). The cache is real (a real
directory, an in-memory origin that can hold its reads); the published objects are in
memory. Which segments and how many bytes: tests/integration/test_edge_folders.py."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from fsnode_core.digests import chunks_digest
from fsnode_core.folder_tokens import FolderPolicy
from fsnode_core.ids import new_id
from fsnode_core.published import SOURCE_UPLOAD, STATUS_READY, Head, Origin, VersionManifest
from fsnode_core.published_keys import tree_key

from edge_node.cache import ChunkCache
from edge_node.early_reads import EarlyReads
from edge_node.folders import FolderIndex
from edge_node.manifest import Manifest
from edge_node.manifests import ManifestStore
from edge_node.prefetch import PlaylistPrefetch, PrefetchConfig
from edge_node.published_reader import PublishedReader
from tests.unit.edge_cache_fakes import Origin as HeldOrigin
from tests.unit.edge_cache_fakes import config

# Every file here has these bytes (the origin answers them for any key): a playlist of
# three segments, each segment one chunk.
TEXT = b"#EXTM3U\n#EXTINF:4,\nseg0.ts\n#EXTINF:4,\nseg1.ts\n#EXTINF:4,\nseg2.ts\n#EXT-X-ENDLIST\n"
VERSION = "1" * 32


class Bucket:
    """Heads, manifests and tree keys in memory (``PublishedReader``'s reads)."""

    def __init__(self) -> None:
        self.heads: dict[str, Head] = {}
        self.manifests: dict[str, VersionManifest] = {}
        self.keys: list[str] = []
        self.manifest_reads: list[str] = []  # paths, in the order read

    def publish(self, path: str) -> Manifest:
        file_id = new_id()
        digest = hashlib.sha256(TEXT).hexdigest()
        published = VersionManifest(
            file_id=file_id,
            version=VERSION,
            path=path,
            size=len(TEXT),
            chunk_size=1000,
            content_type="video/mp2t",
            etag="e",
            last_modified=0,
            source=SOURCE_UPLOAD,
            origin=Origin("b", f"files/{file_id}/{VERSION}"),
            chunk_sha256=digest,
            chunks_sha256=chunks_digest(digest),
        )
        self.manifests[file_id] = published
        self.heads[file_id] = Head(file_id, path, STATUS_READY, VERSION, 1, None, 0)
        self.keys.append(tree_key(path, 1, file_id, VERSION))
        return Manifest.from_published(published)

    async def head(self, file_id: str) -> Head | None:
        return self.heads.get(file_id)

    async def manifest(self, file_id: str, version: str) -> VersionManifest | None:
        found = self.manifests.get(file_id)
        if found is not None:
            self.manifest_reads.append(found.path)
        return found

    async def list_keys(self, prefix: str, max_keys: int) -> tuple[list[str], bool]:
        return [key for key in self.keys if key.startswith(prefix)], True


class EarlyStarts:
    """Stands in for ``EarlyReads``: records the first reads asked for."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str, str | None]] = []

    def start_upload(self, file_id: str, version: str, range_header: str | None) -> None:
        self.started.append((file_id, version, range_header))


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0)


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_fills_across_playlists_stay_within_the_cap(tmp_path: Path, concurrency: int) -> None:
    bucket = Bucket()
    playlists = []
    for folder in ("a/", "b/", "c/"):
        playlists.append((folder, bucket.publish(folder + "index.m3u8")))
        for index in range(3):
            bucket.publish(f"{folder}seg{index}.ts")
    origin = HeldOrigin(TEXT)
    cache = ChunkCache(tmp_path, origin, config())
    await cache.open()
    manifests = ManifestStore(bucket)
    # The fake answers the listings FolderIndex reads, like the real reader.
    folders = FolderIndex(cast(PublishedReader, bucket))
    prefetch = PlaylistPrefetch(
        cache, manifests, folders, PrefetchConfig(segments=3, concurrency=concurrency)
    )
    for _folder, playlist in playlists:
        await cache.ensure(playlist, 0)  # the playlists were just served
    served = len(origin.calls)
    origin.gate, origin.gate_after = asyncio.Event(), 0
    for folder, playlist in playlists:
        prefetch.playlist_served(FolderPolicy(prefix=folder, expires=2**40, kid="k"), playlist)
    await until(lambda: len(origin.calls) == served + concurrency)
    for _ in range(200):  # every task gets its turns: none starts another fill
        await asyncio.sleep(0)
    assert len(origin.calls) == served + concurrency
    assert prefetch.running == 3
    origin.gate.set()
    await until(lambda: prefetch.running == 0)
    assert len(origin.calls) == served + 9  # three segments of each playlist, once each
    assert prefetch.segments_started == 9
    await prefetch.close()
    await manifests.close()
    await cache.close()


async def test_each_reference_resolves_while_the_one_before_it_fills(tmp_path: Path) -> None:
    bucket = Bucket()
    playlist = bucket.publish("show/index.m3u8")
    segments = [bucket.publish(f"show/seg{index}.ts") for index in range(3)]
    origin = HeldOrigin(TEXT)
    cache = ChunkCache(tmp_path, origin, config())
    await cache.open()
    early = EarlyStarts()
    prefetch = PlaylistPrefetch(
        cache,
        ManifestStore(bucket),
        FolderIndex(cast(PublishedReader, bucket)),
        PrefetchConfig(segments=3),
        cast(EarlyReads, early),
    )
    await cache.ensure(playlist, 0)  # just served
    served = len(origin.calls)
    origin.gate, origin.gate_after = asyncio.Event(), 0
    prefetch.playlist_served(FolderPolicy(prefix="show/", expires=2**40, kid="k"), playlist)
    await until(lambda: len(origin.calls) == served + 1)  # seg0's fill, held
    for _ in range(200):
        await asyncio.sleep(0)
    # seg0 fills and seg1 is resolved meanwhile; seg2 waits its turn.
    assert bucket.manifest_reads == ["show/seg0.ts", "show/seg1.ts"]
    # Their first bytes were asked for beside their heads and manifests.
    assert early.started == [(s.file_id, VERSION, None) for s in segments[:2]]
    origin.gate.set()
    await until(lambda: prefetch.running == 0)
    assert bucket.manifest_reads == [f"show/seg{index}.ts" for index in range(3)]
    assert early.started == [(s.file_id, VERSION, None) for s in segments]
    for segment in segments:
        lease = cache.hit(segment, 0)
        assert lease is not None
        cache.release(lease)
