"""Replica facts, compact: one item per (version, block of chunks, node).

A file of 50,000 chunks on three nodes is 39 items, not 150,000: an item holds the
indices of one block of ``BLOCK_CHUNKS`` chunks that the node holds, as a DynamoDB
number set, so a verified warm of a batch of chunks is one ``ADD`` (atomic and
idempotent) and forgetting a node's copies of a version deletes a few items. A full
block's set is about 20 KB, far under the 400 KB item limit.

Layout: ``pk=file#<file_id>``, ``sk=replica#<version>#<block:06d>#<node_id>``, with
``node_id`` for the ``by_node`` index, ``chunks`` (NS, absolute indices) and
``created_at`` (when the first copy of the block was recorded).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

BLOCK_CHUNKS = 4096


@dataclass(slots=True)
class ReplicaRecord:
    """The fact that ``node_id`` holds chunk ``index`` of ``version``."""

    file_id: str
    version: str
    index: int
    node_id: str
    created_at: int


@dataclass(slots=True)
class ReplicaBlock:
    """The chunks of one block of ``version`` that ``node_id`` holds."""

    file_id: str
    version: str
    node_id: str
    block: int
    chunks: set[int] = field(default_factory=set)
    created_at: int = 0

    @property
    def key(self) -> dict[str, Any]:
        return {
            "pk": {"S": f"file#{self.file_id}"},
            "sk": {"S": replica_block_sk(self.version, self.block, self.node_id)},
        }

    def to_item(self) -> dict[str, Any]:
        """The whole item (a bulk load; recording copies adds to the set instead)."""
        return {
            **self.key,
            "file_id": {"S": self.file_id},
            "version": {"S": self.version},
            "node_id": {"S": self.node_id},
            "block": {"N": str(self.block)},
            "chunks": {"NS": [str(i) for i in sorted(self.chunks)]},
            "created_at": {"N": str(self.created_at)},
        }

    def records(self) -> list[ReplicaRecord]:
        """One fact per chunk, in index order."""
        return [
            ReplicaRecord(self.file_id, self.version, index, self.node_id, self.created_at)
            for index in sorted(self.chunks)
        ]

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ReplicaBlock:
        """Build a block from a ``replica#`` item (an emptied set reads as no chunks)."""
        return cls(
            file_id=item["file_id"]["S"],
            version=item["version"]["S"],
            node_id=item["node_id"]["S"],
            block=int(item["block"]["N"]),
            chunks={int(n) for n in item.get("chunks", {}).get("NS", [])},
            created_at=int(item.get("created_at", {}).get("N", "0")),
        )


def block_of(index: int) -> int:
    return index // BLOCK_CHUNKS


def replica_block_sk(version: str, block: int, node_id: str) -> str:
    """Sort key of a node's facts for one block of ``version``."""
    return f"{replica_prefix(version)}{block:06d}#{node_id}"


def replica_prefix(version: str, block: int | None = None) -> str:
    """Sort-key prefix of a version's replica facts (of one block, with ``block``)."""
    return f"replica#{version}#" + ("" if block is None else f"{block:06d}#")


def by_block(indices: Iterable[int]) -> dict[int, list[int]]:
    """Chunk indices grouped by block, each group sorted."""
    groups: dict[int, list[int]] = {}
    for index in sorted(set(indices)):
        groups.setdefault(block_of(index), []).append(index)
    return groups


def holders_by_chunk(
    blocks: Iterable[ReplicaBlock], first: int, last: int, nodes: set[str] | None = None
) -> dict[int, set[str]]:
    """For chunks ``first..last``: the nodes (of ``nodes``, when given) holding each."""
    held: dict[int, set[str]] = {index: set() for index in range(first, last + 1)}
    for block in blocks:
        if nodes is not None and block.node_id not in nodes:
            continue
        for index in block.chunks:
            if first <= index <= last:
                held[index].add(block.node_id)
    return held


def to_ranges(indices: Iterable[int]) -> list[list[int]]:
    """Sorted indices as inclusive ``[first, last]`` runs: ``[0,1,2,5]`` -> ``[[0,2],[5,5]]``."""
    runs: list[list[int]] = []
    for index in sorted(set(indices)):
        if runs and runs[-1][1] == index - 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return runs


def coarsen(ranges: list[list[int]], most: int) -> list[list[int]]:
    """At most ``most`` runs covering ``ranges``: the smallest gaps are closed first
    (a superset: callers only ever act on chunks that still need it)."""
    runs = [list(run) for run in ranges]
    if len(runs) <= most:
        return runs
    gaps = sorted(range(len(runs) - 1), key=lambda i: runs[i + 1][0] - runs[i][1])
    closing = set(gaps[: len(runs) - max(most, 1)])
    out: list[list[int]] = []
    for i, run in enumerate(runs):
        if out and i - 1 in closing:
            out[-1][1] = run[1]
        else:
            out.append(run)
    return out
