"""Which edges may take a viewer now: live (active and recently heard), below their load
bound (``FSNODE_EDGE_MAX_LOAD``), ranked by placement for a key (a file, or a folder so
a stream stays on one edge) and, when the viewer is located, nearest first.

The node list is read once per ``FSNODE_PLACEMENT_CACHE_SECONDS`` per process, not per
share open: a Scan of the nodes table reads every node (about 250 read units per share
open at a thousand nodes, and a DynamoDB round trip before each redirect). A node's
change made through this process (registered, placed, draining, drained, dead) is seen
at once; one made elsewhere within that bound, as a node's load already is within a
heartbeat.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from fsnode_core import placement
from fsnode_core.models import NodeRecord

from chalicelib import aws
from chalicelib.settings import get_settings

_lock = threading.Lock()
_read: tuple[float, list[NodeRecord]] | None = None


def nodes() -> list[NodeRecord]:
    """Every node, as read at most ``placement_cache_seconds`` ago."""
    global _read
    ttl = get_settings().placement_cache_seconds
    now = time.monotonic()
    with _lock:
        kept = _read
    if kept is not None and now - kept[0] < ttl:
        return kept[1]
    listed = aws.node_registry().list_nodes()
    with _lock:
        _read = (now, listed)
    return listed


def forget() -> None:
    """Drop the kept node list (a node's status changed through this process)."""
    global _read
    with _lock:
        _read = None


aws.on_reset(forget)
aws.on_node_change(forget)


def available() -> list[NodeRecord]:
    """Live edges with room for another viewer."""
    settings = get_settings()
    live = placement.eligible(nodes(), time.time(), settings.heartbeat_timeout)
    if settings.edge_max_load:
        live = [node for node in live if node.load < settings.edge_max_load]
    return live


def ranked(key: str, headers: Mapping[str, str], count: int | None = None) -> list[NodeRecord]:
    """Available edges for ``key`` in preference order (at most ``count``)."""
    nodes = available()
    return placement.choose(
        key, nodes, len(nodes) if count is None else count, client_location=client_location(headers)
    )


def pick(key: str, headers: Mapping[str, str]) -> NodeRecord | None:
    """The edge a viewer of ``key`` goes to; None when no edge can take one."""
    chosen = ranked(key, headers, 1)
    return chosen[0] if chosen else None


def client_location(headers: Mapping[str, str]) -> tuple[float, float] | None:
    """The viewer's ``(lat, lng)`` from CloudFront's viewer headers, when present and sane."""
    try:
        lat = float(headers.get("cloudfront-viewer-latitude", ""))
        lng = float(headers.get("cloudfront-viewer-longitude", ""))
    except ValueError:
        return None
    if -90 <= lat <= 90 and -180 <= lng <= 180:
        return (lat, lng)
    return None
