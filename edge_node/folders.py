"""Folder shares' paths to files, from the tree keys in S3 (docs/PROTOCOL.md, "Published
S3 objects" 3, "Edge"): no control plane on the way.

An edge learns a whole folder in one ListObjectsV2 (paged, 1,000 keys a page) and keeps
that listing for at most ``max_age`` seconds, so a stream's playlists and segments cost
one listing, not a request each. A folder too large for ``max_keys`` keys is not kept
whole: its paths resolve one at a time (``Prefix=meta/v1/tree/{path}!``). A path the
kept listing lacks (a file published after it was read) is looked up the same way, and
that answer kept briefly (``MISS_SECONDS``), so a client asking for a missing name again
and again costs one listing per name per few seconds.

The listing only says which file (and version) holds a path; whether that version may
start a response is the head's to say (``edge_node.manifests``), checked within the same
bound. A path whose file turns out deleted is resolved again, fresh, once.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

from fsnode_core.errors import NotFound
from fsnode_core.published_keys import (
    TreeEntry,
    parse_tree_page,
    resolve_tree,
    tree_folder_prefix,
    tree_path_prefix,
)

from edge_node.background import retrieve_exception
from edge_node.published_reader import PublishedReader

# Keys kept per folder listing (ten pages); larger folders resolve per path.
MAX_LISTING_KEYS = 10_000
MISS_SECONDS = 2.0


@dataclass(slots=True)
class _Listing:
    entries: dict[str, TreeEntry] | None  # None: the folder is too large to keep whole
    read_at: float


@dataclass(slots=True)
class _PathAnswer:
    entry: TreeEntry | None
    read_at: float


class FolderIndex:
    """Paths below shared folders to (file id, version), kept within ``max_age``."""

    def __init__(
        self,
        reader: PublishedReader,
        max_age: float = 30.0,
        *,
        max_keys: int = MAX_LISTING_KEYS,
        max_folders: int = 256,
        max_paths: int = 16384,
    ) -> None:
        self._reader = reader
        self.max_age = max_age
        self._max_keys = max_keys
        self._max_folders = max_folders
        self._max_paths = max_paths
        self._listings: OrderedDict[str, _Listing] = OrderedDict()
        self._paths: OrderedDict[str, _PathAnswer] = OrderedDict()
        self._reads: dict[str, asyncio.Task[_Listing]] = {}

    async def resolve(self, folder: str, relative: str, *, fresh: bool = False) -> TreeEntry:
        """The live file at ``folder + relative`` (NotFound if none). ``fresh``: ask S3
        now (the kept answer led to a deleted file)."""
        path = folder + relative
        if not fresh:
            listing = await self._listing(folder)
            if listing.entries is not None and relative in listing.entries:
                return listing.entries[relative]
        entry = await self._lookup(path, fresh=fresh)
        if entry is None:
            raise NotFound("no such file in the shared folder", path=path)
        return entry

    def forget(self) -> None:
        """Drop every kept listing and path (tests; a re-registration)."""
        self._listings.clear()
        self._paths.clear()

    async def _listing(self, folder: str) -> _Listing:
        now = time.monotonic()
        kept = self._listings.get(folder)
        if kept is not None and now - kept.read_at < self.max_age:
            self._listings.move_to_end(folder)
            return kept
        task = self._reads.get(folder)
        if task is None or task.done():  # done: its callbacks are still pending
            task = asyncio.ensure_future(self._read_listing(folder))
            self._reads[folder] = task
            task.add_done_callback(lambda done: self._read_done(folder, done))
        return await asyncio.shield(task)

    def _read_done(self, folder: str, task: asyncio.Task[_Listing]) -> None:
        if self._reads.get(folder) is task:
            del self._reads[folder]
        retrieve_exception(task)

    async def _read_listing(self, folder: str) -> _Listing:
        sent = time.monotonic()
        keys, complete = await self._reader.list_keys(tree_folder_prefix(folder), self._max_keys)
        listing = _Listing(parse_tree_page(keys, folder) if complete else None, sent)
        self._listings[folder] = listing
        self._listings.move_to_end(folder)
        while len(self._listings) > self._max_folders:
            self._listings.popitem(last=False)
        return listing

    async def _lookup(self, path: str, *, fresh: bool) -> TreeEntry | None:
        now = time.monotonic()
        kept = self._paths.get(path)
        if kept is not None and not fresh:
            lifetime = self.max_age if kept.entry is not None else min(self.max_age, MISS_SECONDS)
            if now - kept.read_at < lifetime:
                return kept.entry
        keys, _complete = await self._reader.list_keys(tree_path_prefix(path), self._max_keys)
        entry = resolve_tree(keys, path)
        self._paths[path] = _PathAnswer(entry, now)
        self._paths.move_to_end(path)
        while len(self._paths) > self._max_paths:
            self._paths.popitem(last=False)
        return entry
