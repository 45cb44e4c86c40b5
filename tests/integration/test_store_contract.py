"""NodeRegistry and ChunkCatalog against DynamoDB on the moto server."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.errors import Conflict, InvalidInput, NotFound
from fsnode_core.ids import new_id
from fsnode_core.models import (
    NODE_ACTIVE,
    NODE_DEAD,
    ChunkRecord,
    FileRecord,
    NodeRecord,
    PendingUpload,
    ReplicaRecord,
    WorkItem,
)
from fsnode_core.nodes_store import NodeRegistry


@pytest.fixture()
def registry(cp_env: Any) -> NodeRegistry:
    return NodeRegistry(cp_env.env["FSNODE_NODES_TABLE"], boto3.client("dynamodb"))


@pytest.fixture()
def catalog(cp_env: Any) -> ChunkCatalog:
    return ChunkCatalog(cp_env.env["FSNODE_CHUNKS_TABLE"], boto3.client("dynamodb"))


def _node(**kw: Any) -> NodeRecord:
    return NodeRecord(node_id=new_id(), endpoint="https://10.0.0.1:443", region="r",
                      capacity_bytes=100, credential_sha256="h", lat=1.5, lng=-2.25, **kw)


def _upload(file_id: str, size: int = 10) -> PendingUpload:
    return PendingUpload(file_id=file_id, version="v1", upload_id="u1", name="n", size=size,
                         content_type="text/plain", chunk_size=4, chunk_sha256=["a" * 64] * 3,
                         bucket="b", key="k", created_at=1, expires_at=2)


def _meta(file_id: str) -> FileRecord:
    return FileRecord(file_id=file_id, version="v1", name="n", size=10, content_type="text/plain",
                      etag="e", last_modified=5, chunk_size=4, bucket="b", key="k")


def test_node_roundtrip_and_conflicting_create(registry: NodeRegistry) -> None:
    node = _node()
    registry.create(node)
    assert registry.get(node.node_id) == node
    with pytest.raises(Conflict):
        registry.create(node)
    assert registry.get(new_id()) is None


def test_heartbeat_updates_and_dead_nodes_are_refused(registry: NodeRegistry) -> None:
    node = _node()
    registry.create(node)
    beat = registry.heartbeat(node.node_id, used_bytes=3, free_bytes=97, capacity_bytes=100,
                              load=0.75, hot_files=[], now=50, expires_at=500)
    assert (beat.used_bytes, beat.load, beat.last_heartbeat) == (3, 0.75, 50)
    registry.set_status(node.node_id, NODE_DEAD, expected=NODE_ACTIVE)
    with pytest.raises(Conflict):
        registry.set_status(node.node_id, NODE_DEAD, expected=NODE_ACTIVE)
    with pytest.raises(NotFound):
        registry.heartbeat(node.node_id, used_bytes=0, free_bytes=0, capacity_bytes=0, load=0,
                           hot_files=[], now=60, expires_at=600)
    with pytest.raises(NotFound):
        registry.heartbeat(new_id(), used_bytes=0, free_bytes=0, capacity_bytes=0, load=0,
                           hot_files=[], now=60, expires_at=600)


def test_publish_makes_a_file_visible_exactly_once(catalog: ChunkCatalog) -> None:
    file_id = new_id()
    catalog.put_upload(_upload(file_id))
    with pytest.raises(Conflict):
        catalog.put_upload(_upload(file_id))
    view = catalog.file_view(file_id)
    assert view.meta is None and view.upload is not None
    chunks = [ChunkRecord(file_id, "v1", i, i * 4, min(4, 10 - i * 4), f"{i:064x}")
              for i in range(3)]
    catalog.publish(_meta(file_id), chunks, "u1")
    view = catalog.file_view(file_id)
    assert view.meta == _meta(file_id) and view.upload is None and view.chunks == chunks
    with pytest.raises(Conflict):
        catalog.publish(_meta(file_id), chunks, "u1")
    assert catalog.get_file(file_id) == _meta(file_id)


def test_many_chunks_read_back_in_one_query(catalog: ChunkCatalog) -> None:
    file_id = new_id()
    catalog.put_upload(_upload(file_id, size=4 * 300))
    chunks = [ChunkRecord(file_id, "v1", i, i * 4, 4, f"{i:064x}") for i in range(300)]
    catalog.publish(_meta(file_id), chunks, "u1")
    assert catalog.file_view(file_id).chunks == chunks


def test_replicas_are_recorded_once_and_indexed_by_node(catalog: ChunkCatalog) -> None:
    file_id, node_id = new_id(), new_id()
    replica = ReplicaRecord(file_id=file_id, version="v1", index=2, node_id=node_id,
                            created_at=9)
    assert catalog.put_replica(replica) is True
    assert catalog.put_replica(replica) is False
    assert catalog.replicas_on_node(node_id) == [replica]
    assert catalog.file_view(file_id).replicas == [replica]


def test_work_is_taken_exactly_once(catalog: ChunkCatalog) -> None:
    node_id = new_id()
    live = WorkItem(node_id=node_id, work_id=new_id(), kind="warm", file_id=new_id(),
                    version="v", chunk_index=0, task_token="t", created_at=1, expires_at=10**10)
    expired = WorkItem(node_id=node_id, work_id=new_id(), kind="warm", file_id=new_id(),
                       version="v", chunk_index=0, task_token="t", created_at=1, expires_at=5)
    catalog.put_work(live)
    catalog.put_work(expired)
    assert catalog.pending_work(node_id, now=100) == [live]
    assert catalog.take_work(node_id, live.work_id) == live
    with pytest.raises(NotFound):
        catalog.take_work(node_id, live.work_id)


def test_list_files_pages_and_rejects_forged_tokens(catalog: ChunkCatalog) -> None:
    seen: set[str] = set()
    token = None
    for _ in range(1000):
        files, token = catalog.list_files(3, token)
        seen.update(f.file_id for f in files)
        if token is None:
            break
    assert token is None and seen
    with pytest.raises(InvalidInput):
        catalog.list_files(3, "not-a-token")
