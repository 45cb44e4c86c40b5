"""The edge's manifest store (edge_node.manifests): heads within the revalidation bound,
manifests kept, reads overlapped and shared.

A head read less than ``max_age`` ago decides at once (re-read behind the request past
half of it); past ``max_age`` a request waits for a fresh head, so a delete or an
overwrite ends the old version within the bound, traffic or not. The published objects
here are an in-memory bucket whose reads can be held until released; the clock is a
fake one, moved by the tests. The real S3 path: tests/integration/test_edge_published.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from fsnode_core.digests import chunks_digest, join_digests
from fsnode_core.errors import Gone, NotFound, OriginError
from fsnode_core.ids import new_id
from fsnode_core.published import (
    SOURCE_IMPORT,
    SOURCE_UPLOAD,
    STATUS_DELETED,
    STATUS_READY,
    Head,
    Origin,
    VersionManifest,
)

from edge_node.manifest import Manifest
from edge_node.manifests import ManifestStore

CHUNK = 1000
DATA = bytes(range(256)) * 10  # three chunks: 1000, 1000, 560
V1, V2 = "1" * 32, "2" * 32
MAX_AGE = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "monotonic", fake)
    return fake


def digests(data: bytes = DATA) -> list[str]:
    return [hashlib.sha256(data[i : i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)]


def version_manifest(file_id: str, version: str, *, hashed: bool = True) -> VersionManifest:
    return VersionManifest(
        file_id=file_id,
        version=version,
        path=f"media/{file_id}.mp4",
        size=len(DATA),
        chunk_size=CHUNK,
        content_type="video/mp4",
        etag="abc",
        last_modified=1_700_000_000,
        source=SOURCE_UPLOAD if hashed else SOURCE_IMPORT,
        origin=Origin("b", f"files/{file_id}/{version}", None, None if hashed else "abc"),
        chunk_sha256=join_digests(digests()) if hashed else None,
        chunks_sha256=chunks_digest(digests()) if hashed else None,
    )


class Bucket:
    """Published heads and manifests in memory; ``hold()`` keeps every read waiting
    until ``release()``; ``down``: reads fail as S3 would after its retries."""

    def __init__(self) -> None:
        self.heads: dict[str, Head] = {}
        self.manifests: dict[tuple[str, str], VersionManifest] = {}
        self.head_reads = 0
        self.manifest_reads = 0
        self.waiting = 0
        self.down = False
        self._open = asyncio.Event()
        self._open.set()
        self._seq = 0

    def publish(
        self, file_id: str, version: str, *, hashed: bool = True, expires_at: int | None = None
    ) -> VersionManifest:
        manifest = version_manifest(file_id, version, hashed=hashed)
        self.manifests[(file_id, version)] = manifest
        self._seq += 1
        self.heads[file_id] = Head(
            file_id, manifest.path, STATUS_READY, version, self._seq, expires_at, 0
        )
        return manifest

    def delete(self, file_id: str) -> None:
        self._seq += 1
        head = self.heads[file_id]
        self.heads[file_id] = replace(head, status=STATUS_DELETED, version=None, seq=self._seq)

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def _gate(self) -> None:
        self.waiting += 1
        try:
            await self._open.wait()
        finally:
            self.waiting -= 1
        if self.down:
            raise OriginError("the origin request failed")

    async def head(self, file_id: str) -> Head | None:
        self.head_reads += 1
        await self._gate()
        return self.heads.get(file_id)

    async def manifest(self, file_id: str, version: str) -> VersionManifest | None:
        self.manifest_reads += 1
        await self._gate()
        return self.manifests.get((file_id, version))


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0)


async def test_within_the_bound_a_head_decides_without_io_and_past_half_refreshes_behind(
    clock: Clock,
) -> None:
    bucket, file_id = Bucket(), new_id()
    bucket.publish(file_id, V1)
    store = ManifestStore(bucket, MAX_AGE)
    assert store.fresh(file_id, V1) is None  # never read
    manifest = await store.get(file_id, V1)
    assert (manifest.version, manifest.size, len(manifest.chunks)) == (V1, len(DATA), 3)
    assert store.fresh(file_id, V1) == manifest
    assert store.fresh(file_id, None) == manifest  # an unpinned share: the current one
    assert store.fresh(file_id, V2) is None  # get() decides (410)
    assert (bucket.head_reads, bucket.manifest_reads) == (1, 1)
    clock.now += MAX_AGE * 0.6
    bucket.hold()
    # Past half the bound: still served at once, one head read starts behind it.
    assert store.fresh(file_id, V1) == manifest
    assert store.fresh(file_id, V1) == manifest
    await until(lambda: bucket.waiting == 1)
    assert bucket.head_reads == 2
    bucket.release()
    await until(lambda: bucket.waiting == 0)
    await store.close()


async def test_past_the_bound_a_delete_or_an_overwrite_ends_the_old_version(clock: Clock) -> None:
    bucket, deleted, replaced = Bucket(), new_id(), new_id()
    bucket.publish(deleted, V1)
    bucket.publish(replaced, V1)
    store = ManifestStore(bucket, MAX_AGE)
    await store.get(deleted, V1)
    await store.get(replaced, None)
    bucket.delete(deleted)
    bucket.publish(replaced, V2)
    # No traffic in between; once the bound has passed, the next request reads the head.
    clock.now += MAX_AGE
    assert store.fresh(deleted, V1) is None
    with pytest.raises(Gone, match="deleted"):
        await store.get(deleted, V1)
    with pytest.raises(Gone, match="deleted"):
        await store.get(deleted, None)
    with pytest.raises(Gone, match="replaced"):
        await store.get(replaced, V1)  # a player that began on V1 gets only V1's bytes
    assert (await store.get(replaced, None)).version == V2
    await store.close()


async def test_head_and_manifest_are_read_at_once_and_shared(clock: Clock) -> None:
    bucket, file_id = Bucket(), new_id()
    bucket.publish(file_id, V1)
    store = ManifestStore(bucket, MAX_AGE)
    bucket.hold()
    lookups = [asyncio.ensure_future(store.get(file_id, V1)) for _ in range(20)]
    folder = asyncio.ensure_future(store.get(file_id, None, hint=V1))
    # The pinned version's manifest is read beside the head, not after it; twenty
    # requests and a folder lookup share the two reads.
    await until(lambda: bucket.waiting == 2)
    bucket.release()
    answers = await asyncio.gather(*lookups, folder)
    assert {answer.version for answer in answers} == {V1}
    assert (bucket.head_reads, bucket.manifest_reads) == (1, 1)
    await store.close()


async def test_unpinned_requests_read_the_head_then_its_version() -> None:
    bucket, file_id = Bucket(), new_id()
    bucket.publish(file_id, V2)
    store = ManifestStore(bucket, MAX_AGE)
    # A stale hint (a listing read before an overwrite) costs a read, not the answer.
    assert (await store.get(file_id, None, hint=V1)).version == V2
    await store.close()


async def test_missing_objects_and_expired_files() -> None:
    bucket, file_id, expiring = Bucket(), new_id(), new_id()
    store = ManifestStore(bucket, MAX_AGE)
    with pytest.raises(NotFound):
        await store.get(file_id, None)  # no head: never published
    bucket.publish(file_id, V1)
    del bucket.manifests[(file_id, V1)]  # collected (or never written): never served
    store.forget(file_id)
    with pytest.raises(Gone):
        await store.get(file_id, V1)
    bucket.publish(expiring, V1, expires_at=1)  # past its expiry, not yet pruned
    with pytest.raises(Gone, match="expired"):
        await store.get(expiring, None)
    await store.close()


async def test_no_head_within_the_bound_fails_closed(clock: Clock) -> None:
    bucket, file_id = Bucket(), new_id()
    bucket.publish(file_id, V1)
    store = ManifestStore(bucket, MAX_AGE)
    await store.get(file_id, V1)
    bucket.down = True
    clock.now += MAX_AGE * 0.6
    assert store.fresh(file_id, V1) is not None  # within the bound: serves
    await until(lambda: bucket.head_reads == 2)
    clock.now += MAX_AGE
    with pytest.raises(OriginError):
        await store.get(file_id, V1)  # past it, S3 must answer first
    bucket.down = False
    assert (await store.get(file_id, V1)).version == V1
    await store.close()


async def test_a_head_read_in_flight_when_the_file_is_forgotten_is_not_kept() -> None:
    bucket, file_id = Bucket(), new_id()
    bucket.publish(file_id, V1)
    store = ManifestStore(bucket, MAX_AGE)
    bucket.hold()
    lookup = asyncio.ensure_future(store.get(file_id, V1))
    await until(lambda: bucket.waiting == 2)
    store.forget(file_id)  # evict work: the read may predate the delete
    bucket.release()
    await lookup  # that request was already under way
    assert store.fresh(file_id, V1) is None
    assert store.peek(file_id) is None
    await store.close()


async def test_an_older_head_never_replaces_a_newer_one(clock: Clock) -> None:
    bucket, file_id = Bucket(), new_id()
    bucket.publish(file_id, V1)
    bucket.publish(file_id, V2)
    store = ManifestStore(bucket, MAX_AGE)
    assert (await store.get(file_id, None)).version == V2
    bucket.heads[file_id] = replace(bucket.heads[file_id], version=V1, seq=1)  # a stale read
    clock.now += MAX_AGE
    assert (await store.get(file_id, None)).version == V2
    await store.close()


async def test_an_import_picks_up_its_hashes_and_keeps_what_the_edge_learned(
    clock: Clock,
) -> None:
    bucket, file_id = Bucket(), new_id()
    bucket.publish(file_id, V1, hashed=False)
    store = ManifestStore(bucket, MAX_AGE)
    manifest = await store.get(file_id, V1)
    assert manifest.origin_etag == "abc" and manifest.chunks[0].sha256 is None
    await store.learn_hash(file_id, V1, 0, digests()[0])
    clock.now += MAX_AGE
    # Not hashed yet at the re-read: the learned hash stays.
    again = await store.get(file_id, V1)
    await until(lambda: bucket.manifest_reads == 2)
    await until(lambda: store.peek(file_id) is not None)
    assert store.peek(file_id) is not None
    assert again.chunks[0].sha256 == digests()[0]
    # The hashing job has run: the next head read brings the manifest's hashes.
    hashed = version_manifest(file_id, V1)
    bucket.manifests[(file_id, V1)] = replace(
        hashed, source=SOURCE_IMPORT, origin=bucket.manifests[(file_id, V1)].origin
    )
    clock.now += MAX_AGE
    await store.get(file_id, V1)
    await until(lambda: bucket.manifest_reads == 3)
    await until(lambda: (store.peek(file_id) or manifest).hashed)
    learned = store.peek(file_id)
    assert learned is not None
    assert [c.sha256 for c in learned.chunks] == digests()
    await store.close()


def test_the_served_manifest_is_laid_out_from_the_published_one() -> None:
    file_id = new_id()
    manifest = Manifest.from_published(version_manifest(file_id, V1))
    assert [(c.index, c.offset, c.length) for c in manifest.chunks] == [
        (0, 0, 1000),
        (1, 1000, 1000),
        (2, 2000, 560),
    ]
    assert [c.sha256 for c in manifest.chunks] == digests()
    assert manifest.origin_etag is None  # an upload's key is written once: no pin
    assert manifest.key == f"files/{file_id}/{V1}"
    imported = Manifest.from_published(version_manifest(file_id, V1, hashed=False))
    assert imported.origin_etag == "abc" and not imported.hashed


async def test_a_pin_newer_than_the_kept_head_reads_it_again() -> None:
    """The control plane redirects with the version current now; an edge whose kept head
    (within the bound) still names the previous one reads the head again instead of
    answering 410, and a pin of a version it saw replaced is 410 without a read."""
    bucket, file_id = Bucket(), new_id()
    bucket.publish(file_id, V1)
    store = ManifestStore(bucket, MAX_AGE)
    assert (await store.get(file_id, V1)).version == V1
    bucket.publish(file_id, V2)  # no time passes: the kept head is within the bound
    assert (await store.get(file_id, V2)).version == V2
    assert bucket.head_reads == 2
    with pytest.raises(Gone, match="replaced"):
        await store.get(file_id, V1)
    with pytest.raises(Gone, match="replaced"):
        await store.get(file_id, "3" * 32)  # never published: one read, then 410
    assert bucket.head_reads == 3
    await store.close()
