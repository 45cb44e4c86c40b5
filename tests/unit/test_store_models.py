"""The DynamoDB codec and the records' item layout (no AWS needed)."""

from __future__ import annotations

from fsnode_core.ddb import from_attrs, to_attrs
from fsnode_core.models import (
    FileRecord,
    NodeRecord,
    PathClaim,
    ReplicaRecord,
    RetiredVersion,
    WorkItem,
)
from fsnode_core.replica_blocks import ReplicaBlock, by_block, coarsen, holders_by_chunk, to_ranges


def test_codec_roundtrips_plain_values() -> None:
    value = {"s": "x", "i": 3, "f": 0.25, "b": True, "l": ["a", 1], "m": {"k": 2.5}, "none": None}
    item = to_attrs(value)
    assert "none" not in item and item["f"] == {"N": "0.25"}
    assert from_attrs(item) == {k: v for k, v in value.items() if v is not None}


def test_records_roundtrip_and_use_the_documented_keys() -> None:
    node = NodeRecord(
        node_id="a" * 32,
        endpoint="https://h:1",
        region="r",
        capacity_bytes=5,
        credential_sha256="h",
        lat=1.0,
        lng=2.0,
        load=0.5,
    )
    assert NodeRecord.from_item(node.to_item()) == node
    assert "credential_sha256" not in node.to_api()
    meta = FileRecord(
        file_id="b" * 32,
        version="v",
        path="a/n",
        size=9,
        content_type="t",
        etag="e",
        last_modified=1,
        chunk_size=4,
        bucket="b",
        key="k",
    )
    assert meta.to_item()["pk"] == {"S": f"file#{'b' * 32}"} and meta.to_item()["sk"]["S"] == "meta"
    assert meta.to_item()["list_sk"] == {"S": "a/n"}  # listed by path
    assert FileRecord.from_item(meta.to_item()) == meta and meta.chunk_count() == 3
    assert meta.name == "n" and meta.to_api()["name"] == "n"
    claim = PathClaim("a/n", "b" * 32, 5)
    assert (
        claim.to_item()["pk"] == {"S": "path#a/n"} and PathClaim.from_item(claim.to_item()) == claim
    )
    retired = RetiredVersion("b" * 32, "v", 1, 2)
    assert retired.to_item()["sk"] == {"S": "retired#v"}
    assert RetiredVersion.from_item(retired.to_item()) == retired
    block = ReplicaBlock("b" * 32, "v", "n" * 32, 1, {4096, 4100}, 1)
    item = block.to_item()
    assert item["sk"] == {"S": f"replica#v#000001#{'n' * 32}"}
    assert item["node_id"]["S"] == "n" * 32 and ReplicaBlock.from_item(item) == block
    assert block.records() == [
        ReplicaRecord("b" * 32, "v", 4096, "n" * 32, 1),
        ReplicaRecord("b" * 32, "v", 4100, "n" * 32, 1),
    ]
    work = WorkItem("n" * 32, "w" * 32, "warm", "b" * 32, "v", 1, "tok", 1, 2)
    assert "node_id" not in work.to_item()  # work must not show up in the by_node index
    assert WorkItem.from_item(work.to_item()) == work and "task_token" not in work.to_api()


def test_chunk_runs_are_compact_and_coarsened_to_a_bound() -> None:
    assert to_ranges([5, 0, 1, 2, 2]) == [[0, 2], [5, 5]] and to_ranges([]) == []
    alternate = to_ranges(range(0, 100, 2))
    assert len(alternate) == 50
    coarse = coarsen(alternate, 10)
    assert len(coarse) == 10 and coarse[0][0] == 0 and coarse[-1][1] == 98
    covered = {i for first, last in coarse for i in range(first, last + 1)}
    assert covered >= set(range(0, 100, 2))  # a superset, never fewer chunks
    assert coarsen([[0, 1], [10, 10], [12, 20]], 2) == [[0, 1], [10, 20]]  # smallest gap first
    assert by_block([4096, 1, 8191, 0]) == {0: [0, 1], 1: [4096, 8191]}


def test_holders_by_chunk_counts_only_the_nodes_asked_about() -> None:
    blocks = [
        ReplicaBlock("f", "v", "a", 0, {0, 1, 2}),
        ReplicaBlock("f", "v", "b", 0, {1}),
        ReplicaBlock("f", "v", "dead", 0, {2}),
    ]
    assert holders_by_chunk(blocks, 1, 3, {"a", "b"}) == {1: {"a", "b"}, 2: {"a"}, 3: set()}
