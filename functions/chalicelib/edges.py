"""Which edges may take a viewer now: live (active and recently heard), below their load
bound (``FSNODE_EDGE_MAX_LOAD``), ranked by placement for a key (a file, or a folder so
a stream stays on one edge) and, when the viewer is located, nearest first."""

from __future__ import annotations

import time
from collections.abc import Mapping

from fsnode_core import placement
from fsnode_core.models import NodeRecord

from chalicelib import aws
from chalicelib.settings import get_settings


def available() -> list[NodeRecord]:
    """Live edges with room for another viewer."""
    settings = get_settings()
    live = placement.eligible(
        aws.node_registry().list_nodes(), time.time(), settings.heartbeat_timeout
    )
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
