"""Share redirects read the nodes table once per ``FSNODE_PLACEMENT_CACHE_SECONDS`` per
process, not once per share open; a node change made through the same process is seen
at once, one made elsewhere within the bound."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from fsnode_core.models import NODE_ACTIVE, NODE_DRAINING
from fsnode_core.nodes_store import NodeRegistry

from tests.integration.control_plane_helpers import live_node, unique_path, upload


@pytest.fixture()
def scans(cp_stack: Any) -> Iterator[list[str]]:
    """Scans of the nodes table the app's DynamoDB client sends, as they happen."""
    from chalicelib import aws

    seen: list[str] = []
    table = cp_stack.env["FSNODE_NODES_TABLE"]

    def count(params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == table:
            seen.append(table)

    client = aws.client("dynamodb")
    client.meta.events.register("provide-client-params.dynamodb.Scan", count)
    try:
        yield seen
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb.Scan", count)


def _cache_for(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    from chalicelib import edges
    from chalicelib.settings import get_settings

    monkeypatch.setenv("FSNODE_PLACEMENT_CACHE_SECONDS", str(seconds))
    get_settings.cache_clear()
    edges.forget()


def _playlist_share(cp_api: Any, name: str) -> str:
    """The path, at the control plane, of a playlist under a new folder share."""
    folder = unique_path(name) + "/"
    upload(cp_api, b"#EXTM3U\n", path=f"{folder}index.m3u8", extra={"content_type": None})
    share = cp_api.call("POST", "/shares", {"prefix": folder, "ttl_seconds": 600}).json_body
    return str(urlsplit(share["share_url"]).path) + "index.m3u8"


def _folder_redirect(cp_api: Any, name: str) -> str:
    """A folder share opened once: the edge its 307 names."""
    return _edge_of(cp_api, _playlist_share(cp_api, name))


def _edge_of(cp_api: Any, path: str) -> str:
    answer = cp_api.call("GET", path, key=False)
    assert answer.status_code == 307, answer.body
    return str(urlsplit(answer.headers["Location"]).netloc)


def test_share_opens_within_the_bound_read_the_nodes_table_once(
    cp_api: Any, cp_stack: Any, scans: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    live_node(cp_api, cp_stack)
    _cache_for(monkeypatch, 60)
    playlist = _playlist_share(cp_api, "cached")
    before = len(scans)
    edges = {_edge_of(cp_api, playlist) for _ in range(10)}
    assert len(edges) == 1
    assert len(scans) - before == 1

    _cache_for(monkeypatch, 0)  # no bound: every share open reads the table
    before = len(scans)
    for _ in range(3):
        _edge_of(cp_api, playlist)
    assert len(scans) - before == 3


def test_a_node_drained_through_this_process_takes_no_viewer_at_once(
    cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(2):
        live_node(cp_api, cp_stack)
    _cache_for(monkeypatch, 60)
    playlist = _playlist_share(cp_api, "drained")
    first = _edge_of(cp_api, playlist)
    registry = NodeRegistry(cp_stack.env["FSNODE_NODES_TABLE"], boto3.client("dynamodb"))
    chosen = next(n for n in registry.list_nodes() if urlsplit(n.endpoint).netloc == first)
    drained = cp_api.call("POST", f"/nodes/{chosen.node_id}/drain")
    assert drained.status_code == 200, drained.body
    try:
        # Cached for a minute, but the drain went through this process: seen now.
        assert _edge_of(cp_api, playlist) != first
    finally:
        registry.set_status(chosen.node_id, NODE_ACTIVE, expected=NODE_DRAINING)


def test_a_change_made_elsewhere_is_seen_within_the_bound(
    cp_api: Any, cp_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(2):
        live_node(cp_api, cp_stack)
    bound = 0.5
    _cache_for(monkeypatch, bound)
    first = _folder_redirect(cp_api, "elsewhere")
    # Another Lambda instance's write: this process's registry never hears of it.
    elsewhere = NodeRegistry(cp_stack.env["FSNODE_NODES_TABLE"], boto3.client("dynamodb"))
    chosen = next(n for n in elsewhere.list_nodes() if urlsplit(n.endpoint).netloc == first)
    elsewhere.set_status(chosen.node_id, NODE_DRAINING, expected=NODE_ACTIVE)
    try:
        time.sleep(bound * 1.5)
        folder_edges = {_folder_redirect(cp_api, f"elsewhere-{i}") for i in range(6)}
        assert first not in folder_edges
    finally:
        elsewhere.set_status(chosen.node_id, NODE_ACTIVE, expected=NODE_DRAINING)
