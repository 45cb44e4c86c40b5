"""NodeRegistry and ChunkCatalog against DynamoDB on the moto server."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import boto3
import pytest
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.errors import Conflict, InvalidInput, NotFound
from fsnode_core.ids import new_id
from fsnode_core.models import (
    NODE_ACTIVE,
    NODE_DEAD,
    FileRecord,
    NodeRecord,
    PathClaim,
    PendingUpload,
    ReplicaRecord,
    RetiredVersion,
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
    return NodeRecord(
        node_id=new_id(),
        endpoint="https://10.0.0.1:443",
        region="r",
        capacity_bytes=100,
        credential_sha256="h",
        lat=1.5,
        lng=-2.25,
        **kw,
    )


def _upload(file_id: str, size: int = 10, path: str = "n") -> PendingUpload:
    return PendingUpload(
        file_id=file_id,
        version="v1",
        upload_id="u1",
        path=path,
        size=size,
        content_type="text/plain",
        chunk_size=4,
        bucket="b",
        key="k",
        created_at=1,
        expires_at=2,
    )


def _meta(file_id: str, path: str = "n", seq: int = 1) -> FileRecord:
    return FileRecord(
        file_id=file_id,
        version="v1",
        path=path,
        size=10,
        content_type="text/plain",
        etag="e",
        last_modified=5,
        chunk_size=4,
        bucket="b",
        key="k",
        seq=seq,
        published_seq=seq,
    )


def _published(catalog: ChunkCatalog, file_id: str, path: str) -> PendingUpload:
    """A new file at ``path``, claimed, uploaded and published; its upload."""
    assert catalog.claim_path(PathClaim(path, file_id))
    upload = _upload(file_id, path=path)
    catalog.put_upload(upload)
    catalog.publish_version(_meta(file_id, path), upload, current=None, retired=None)
    return upload


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
    beat = registry.heartbeat(
        node.node_id,
        used_bytes=3,
        free_bytes=97,
        capacity_bytes=100,
        load=0.75,
        hot_files=[],
        now=50,
        expires_at=500,
    )
    assert (beat.used_bytes, beat.load, beat.last_heartbeat) == (3, 0.75, 50)
    registry.set_status(node.node_id, NODE_DEAD, expected=NODE_ACTIVE)
    with pytest.raises(Conflict):
        registry.set_status(node.node_id, NODE_DEAD, expected=NODE_ACTIVE)
    for refused in (node.node_id, new_id()):  # a dead node, a node never registered
        with pytest.raises(NotFound):
            registry.heartbeat(
                refused,
                used_bytes=0,
                free_bytes=0,
                capacity_bytes=0,
                load=0,
                hot_files=[],
                now=60,
                expires_at=600,
            )


def test_publish_makes_a_file_visible_exactly_once(catalog: ChunkCatalog) -> None:
    file_id, path = new_id(), f"store/{new_id()}"
    upload = _upload(file_id, path=path)
    catalog.put_upload(upload)
    with pytest.raises(Conflict):
        catalog.put_upload(upload)
    view = catalog.file_view(file_id)
    assert view.meta is None and view.upload is not None
    with pytest.raises(Conflict, match="path"):  # the path must be this file's
        catalog.publish_version(_meta(file_id, path), upload, current=None, retired=None)
    assert catalog.claim_path(PathClaim(path, file_id))
    assert not catalog.claim_path(PathClaim(path, new_id()))
    catalog.publish_version(_meta(file_id, path), upload, current=None, retired=None)
    view = catalog.file_view(file_id)
    assert view.meta == _meta(file_id, path) and view.upload is None
    with pytest.raises(Conflict):
        catalog.publish_version(_meta(file_id, path), upload, current=None, retired=None)
    assert catalog.get_file(file_id) == _meta(file_id, path)
    # The marker of the unpublished change, until the publisher clears it for its seq.
    assert file_id in catalog.unsynced(10**16 - 1, 1000)
    assert not catalog.clear_sync(file_id, 2) and catalog.clear_sync(file_id, 1)
    assert file_id not in catalog.unsynced(10**16 - 1, 1000)


def test_a_new_version_needs_the_state_it_was_read_in(catalog: ChunkCatalog) -> None:
    file_id, path = new_id(), f"store/{new_id()}"
    first = _published(catalog, file_id, path)
    current = catalog.get_file(file_id)
    assert current is not None
    changed = catalog.set_expiry(current, 10**9, seq=2, now=3)
    second = replace(first, version="v2", upload_id="u2", replaces="v1")
    catalog.put_upload(second)
    newer = replace(_meta(file_id, path, seq=3), version="v2")
    retired = RetiredVersion(file_id, "v1", retired_at=3, due=3)
    with pytest.raises(Conflict, match="changed"):  # read before the expiry change
        catalog.publish_version(newer, second, current=current, retired=retired)
    catalog.publish_version(newer, second, current=changed, retired=retired)
    assert catalog.get_file(file_id) == newer
    assert catalog.versions_to_collect(3) == [retired]


def test_a_tombstone_frees_the_path(catalog: ChunkCatalog) -> None:
    file_id, path = new_id(), f"store/{new_id()}"
    _published(catalog, file_id, path)
    current = catalog.get_file(file_id)
    assert current is not None and catalog.get_claim(path) == PathClaim(path, file_id)
    deleted = catalog.tombstone(current, seq=5, due=7, now=6)
    assert deleted.status == "deleting" and catalog.get_claim(path) is None
    with pytest.raises(Conflict):
        catalog.tombstone(current, seq=6, due=7, now=6)
    assert file_id in [m.file_id for m in catalog.files_to_collect(7)]
    assert file_id not in [m.file_id for m in catalog.files_to_collect(6)]
    assert catalog.delete_version_items(file_id, "v1") == 1
    assert catalog.get_file(file_id) is None


def test_replicas_are_recorded_once_and_indexed_by_node(catalog: ChunkCatalog) -> None:
    file_id, node_id = new_id(), new_id()
    replica = ReplicaRecord(file_id=file_id, version="v1", index=2, node_id=node_id, created_at=9)
    assert catalog.put_replica(replica) is True
    assert catalog.put_replica(replica) is False
    assert catalog.replicas_on_node(node_id) == [replica]
    assert catalog.file_view(file_id).replicas == [replica]


def test_work_is_taken_exactly_once(catalog: ChunkCatalog) -> None:
    node_id = new_id()
    live, expired = (
        WorkItem(
            node_id=node_id,
            work_id=new_id(),
            kind="warm",
            file_id=new_id(),
            version="v",
            chunk_index=0,
            task_token="t",
            created_at=1,
            expires_at=expires_at,
        )
        for expires_at in (10**10, 5)
    )
    catalog.put_work(live)
    catalog.put_work(expired)
    assert catalog.pending_work(node_id, now=100) == [live]
    assert catalog.take_work(node_id, live.work_id) == live
    with pytest.raises(NotFound):
        catalog.take_work(node_id, live.work_id)


def test_list_files_by_prefix_pages_in_path_order(catalog: ChunkCatalog) -> None:
    folder = f"store-list/{new_id()}/"
    paths = [folder + name for name in ("a", "b/c", "b/d", "e")]
    for path in reversed(paths):
        _published(catalog, new_id(), path)
    seen: list[str] = []
    token = None
    for _ in range(10):
        files, token = catalog.list_files(folder, 3, token)
        seen += [f.path for f in files]
        if token is None:
            break
    assert token is None and seen == paths
    assert [f.path for f in catalog.list_files(folder + "b/", 10, None)[0]] == paths[1:3]
    with pytest.raises(InvalidInput):
        catalog.list_files(folder, 3, "not-a-token")
    foreign = catalog.list_files("", 1, None)[1]
    assert foreign is not None
    with pytest.raises(InvalidInput):  # a token of another listing
        catalog.list_files(folder + "zzz", 3, foreign)
