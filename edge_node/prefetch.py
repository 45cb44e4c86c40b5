"""Playlist-aware prefetch: when a folder share's media playlist is asked for, the edge
starts filling the first segments it names (resolved relative to the playlist, in the
same folder share) before the player asks for them, so a cold start waits for the
playlist and not again for each first segment. They are filled in the order a player
asks for them, each resolved (tree listing, head, manifest) while the one before it
fills, with its first bytes read beside its head and manifest (``edge_node.early_reads``):
resolving them all at once put a later segment's reads ahead of the init segment the
player waits for (a cold start's init took about twice as long, measured).
An HLS master playlist fills its first variant playlist (where players start) the
same way, which is then prefetched as a media playlist: a cold start's variant, init
and first segments are on their way while the player reads the master.

Capped so a playlist of thousands of segments cannot flood the origin: at most
``segments`` references per playlist and ``max_bytes`` of segment bytes, at most
``concurrency`` segment fills at once across every playlist, at most ``MAX_PENDING``
playlists waiting their turn (more are skipped), and each playlist version once (a
live playlist re-asked every few seconds costs nothing more). A segment outside the
folder, an absolute URL, or one that does not resolve is skipped; failures only log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from fsnode_core.errors import FsnodeError
from fsnode_core.folder_tokens import FolderPolicy
from fsnode_core.paths import from_url_path, is_valid_path, url_path

from edge_node.background import TaskSet
from edge_node.cache import ChunkCache
from edge_node.early_reads import EarlyReads
from edge_node.folders import FolderIndex
from edge_node.manifest import Manifest
from edge_node.manifests import ManifestStore
from edge_node.playlists import media_segments, variant_playlists

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# A playlist larger than this is not read for prefetching (the origin fallback's limit).
MAX_PLAYLIST_BYTES = MIB
MAX_PENDING = 64
_SEEN = 4096


@dataclass(frozen=True, slots=True)
class PrefetchConfig:
    """Caps; see edge_node/README.md (FSNODE_PREFETCH_*). ``segments=0`` turns it off."""

    segments: int = 3
    max_bytes: int = 32 * MIB
    concurrency: int = 4


class PlaylistPrefetch:
    """Fills the first segments of media playlists served through folder shares."""

    def __init__(
        self,
        cache: ChunkCache,
        manifests: ManifestStore,
        folders: FolderIndex,
        config: PrefetchConfig | None = None,
        early: EarlyReads | None = None,
    ) -> None:
        self.config = config or PrefetchConfig()
        self._early = early
        self._cache = cache
        self._manifests = manifests
        self._folders = folders
        self._slots = asyncio.Semaphore(max(1, self.config.concurrency))
        self._tasks = TaskSet()
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Counters for tests and /metrics.
        self.segments_started = 0
        self.bytes_started = 0
        self.skipped = 0

    def playlist_served(self, policy: FolderPolicy, playlist: Manifest) -> None:
        """Called as a folder share's playlist is served; never waits, never raises."""
        if self.config.segments <= 0 or playlist.size > MAX_PLAYLIST_BYTES:
            return
        key = (playlist.file_id, playlist.version)
        if key in self._seen:
            return
        if len(self._tasks) >= MAX_PENDING:
            self.skipped += 1
            return
        self._seen[key] = None
        while len(self._seen) > _SEEN:
            self._seen.popitem(last=False)
        self._tasks.spawn(self._run(policy, playlist), name=f"prefetch-{playlist.file_id}")

    @property
    def running(self) -> int:
        """Playlists being prefetched (or waiting for a slot)."""
        return len(self._tasks)

    async def close(self) -> None:
        await self._tasks.close()

    async def _run(self, policy: FolderPolicy, playlist: Manifest) -> None:
        targets: list[asyncio.Task[Manifest | None]] = []
        try:
            text = await self._read(playlist)
            limit = self.config.segments
            references = media_segments(playlist.path, text, limit)
            # A master: only the variant players start with (any more would compete
            # with it for the origin, for bytes a player may never ask for).
            variants = [] if references else variant_playlists(playlist.path, text, 1)
            wanted = references or variants
            budget = self.config.max_bytes
            for at, reference in enumerate(wanted):
                if not targets:
                    targets.append(self._resolve(policy, playlist, reference))
                # One ahead: the next is resolved while this one fills.
                if at + 1 < len(wanted):
                    targets.append(self._resolve(policy, playlist, wanted[at + 1]))
                found = await targets[at]
                if found is None:
                    continue
                budget = await self._fill(found, budget)
                if variants:
                    # Where the player starts: its segments are next.
                    self.playlist_served(policy, found)
                if budget <= 0:
                    break
        except (FsnodeError, UnicodeDecodeError) as exc:
            log.info("playlist prefetch stopped path=%s: %s", playlist.path, exc)
        finally:
            for target in targets:
                target.cancel()
            await asyncio.gather(*targets, return_exceptions=True)

    def _resolve(
        self, policy: FolderPolicy, playlist: Manifest, reference: str
    ) -> asyncio.Task[Manifest | None]:
        return asyncio.ensure_future(self._target(policy, playlist, reference))

    async def _target(
        self, policy: FolderPolicy, playlist: Manifest, reference: str
    ) -> Manifest | None:
        """The current version of the file a playlist reference names (None: outside
        the folder, or no such file)."""
        path = resolve(policy, playlist.path, reference)
        if path is None:
            return None
        try:
            entry = await self._folders.resolve(policy.prefix, path[len(policy.prefix) :])
            if self._early is not None and not self._manifests.kept(entry.file_id, entry.version):
                # Its first bytes beside its head and manifest, as a player's request.
                self._early.start_upload(entry.file_id, entry.version, None)
            return await self._manifests.get(entry.file_id, None, hint=entry.version)
        except FsnodeError as exc:
            log.info("playlist prefetch skipped path=%s: %s", path, exc)
            return None

    async def _read(self, playlist: Manifest) -> str:
        parts = []
        for chunk in playlist.chunks:
            async with (
                self._cache.lease(playlist, chunk.index, offset=0) as lease,
                contextlib.aclosing(lease.blocks(0, chunk.length)) as blocks,
            ):
                async for block in blocks:
                    parts.append(bytes(block))
        return b"".join(parts).decode("utf-8")

    async def _fill(self, segment: Manifest, budget: int) -> int:
        """Fill the segment's chunks (within ``budget`` bytes); the budget left."""
        self.segments_started += 1
        for chunk in segment.chunks:
            if budget <= 0:
                break
            budget -= chunk.length
            self.bytes_started += chunk.length
            async with self._slots:
                await self._cache.ensure(segment, chunk.index)
        return budget


def resolve(policy: FolderPolicy, playlist_path: str, reference: str) -> str | None:
    """The path a playlist's relative reference names, if it lies in the share's folder."""
    if urlsplit(reference).scheme or reference.startswith("//") or "?" in reference:
        return None
    joined = urljoin("/" + url_path(playlist_path), reference)
    try:
        path = from_url_path(joined.lstrip("/"))
    except FsnodeError:
        return None
    if not is_valid_path(path) or not policy.covers(path) or path == policy.prefix:
        return None
    return path
