"""Read-ahead: which requests read a file sequentially, so that fetching the next
chunks before they are asked for pays off."""

from __future__ import annotations

from collections import OrderedDict

from edge_node.manifest import Manifest


class ReadAhead:
    """Spots sequential reading of a file, the case where fetching ahead pays off.

    A request is sequential when it starts at (or up to a chunk past) where an
    earlier request for the same file version ended: a player asking for the next
    range. A small overlap is allowed; a repeat of the same range is not sequential.
    An open-ended request (the player will read on) is too. Only a few recent ends
    per file are kept.
    """

    OVERLAP = 1024

    def __init__(self, chunks: int = 2, max_files: int = 4096, ends_per_file: int = 8) -> None:
        self.chunks = max(0, chunks)
        self._max_files = max_files
        self._per_file = ends_per_file
        self._ends: OrderedDict[tuple[str, str], list[int]] = OrderedDict()

    def observe(self, manifest: Manifest, first: int, last: int, open_ended: bool) -> bool:
        """Record a request for ``first..last``; True when reading looks sequential."""
        file_key = (manifest.file_id, manifest.version)
        ends = self._ends.pop(file_key, [])
        # Near an earlier end: first - slack <= end <= first + OVERLAP.
        low, high = first - manifest.chunk_size, first + self.OVERLAP
        sequential = open_ended
        for end in ends:
            if low <= end <= high:
                sequential = True
                break
        ends = [*ends[-(self._per_file - 1) :], last + 1]
        self._ends[file_key] = ends
        while len(self._ends) > self._max_files:
            self._ends.popitem(last=False)
        return sequential
