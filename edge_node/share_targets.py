"""What a verified share request serves: the file version (from the published S3
objects, ``edge_node.manifests`` and ``edge_node.folders``) and how long clients may keep
it. A file share names the file (``/f/{file_id}``, pinned by ``v`` or not); a folder
share names a path below its folder (``/t/{TOKEN}/{path...}``). Cold requests that know
their version start their first data range at once (``edge_node.early_reads``); a
folder share's media playlist starts its prefetch (``edge_node.prefetch``).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from fsnode_core.content_types import is_playlist
from fsnode_core.errors import Gone, NotFound
from fsnode_core.ids import check_id
from fsnode_core.signing import SharePolicy

from edge_node.manifest import Manifest
from edge_node.response_headers import cache_control

if TYPE_CHECKING:
    from edge_node.context import EdgeContext

# A version ticket stamped up to this many seconds in the future (the control plane's
# clock ahead of this edge's) is still honoured.
TICKET_CLOCK_SKEW = 5.0


def client_address(request: web.Request, trusted_proxy_hops: int) -> str | None:
    """The client's IP address for ``ip=`` shares (None when it cannot be known).

    The TCP peer, unless ``trusted_proxy_hops`` proxies in front append to
    ``X-Forwarded-For`` (an ALB does): then the entry that many places from the
    right, the address the client-facing trusted proxy saw. Entries left of it
    come from the client and prove nothing. A network load balancer passing TCP through
    with client IP preservation needs no header: the peer is the client.
    """
    if trusted_proxy_hops > 0:
        header = ",".join(request.headers.getall("X-Forwarded-For", ()))
        entries = [entry.strip() for entry in header.split(",")]
        if len(entries) < trusted_proxy_hops:
            return None
        raw = entries[-trusted_proxy_hops]
    else:
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if not peer:
            return None
        raw = str(peer[0])
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return None
    # A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


@dataclass(frozen=True, slots=True)
class Target:
    """What a verified share request serves, and for how long clients may keep it."""

    manifest: Manifest
    cache_control: str


async def file_share(request: web.Request, edge: EdgeContext) -> Target:
    file_id = check_id(request.match_info["file_id"], "file_id")
    query = request.query
    # The address only matters to ip= shares; skip the lookup for the others.
    client_ip = client_address(request, edge.trusted_proxy_hops) if "ip" in query else None

    policy = edge.keys.verify(file_id, query, client_ip)
    # Without a version pin a file share grants the file's current version.
    version = policy.version or None
    manifest = edge.manifests.fresh(file_id, version) or _ticketed(edge, policy)
    if manifest is None:
        _read_early(request, edge, file_id, version)
        manifest = await edge.manifests.get(file_id, version)
    return Target(
        manifest, cache_control(manifest.path, policy.expires, revalidate=version is None)
    )


async def folder_share(request: web.Request, edge: EdgeContext) -> Target:
    # The raw path: the token and the path after it are checked still encoded, so
    # nothing is decoded twice (fsnode_core.folder_tokens).
    raw = request.raw_path.partition("?")[0].removeprefix("/t/")
    token, _, raw_path = raw.partition("/")
    client_ip = client_address(request, edge.trusted_proxy_hops)
    policy, relative = edge.keys.open_folder(token, raw_path, client_ip)
    if relative == "":
        raise NotFound("a folder share's listing is the control plane's; ask for a file in it")
    manifest = await _folder_file(request, edge, policy.prefix, relative)
    if edge.prefetch is not None and request.method == "GET" and is_playlist(manifest.path):
        edge.prefetch.playlist_served(policy, manifest)
    return Target(manifest, cache_control(manifest.path, policy.expires, revalidate=False))


def _ticketed(edge: EdgeContext, policy: SharePolicy) -> Manifest | None:
    """The pinned version, answered from its version ticket with no S3 read first,
    while the ticket is younger than the bound a head read would have
    (``fsnode_core.version_tickets``); else None (the head decides)."""
    ticket = edge.keys.ticket(policy)
    bucket = edge.published.bucket if edge.published is not None else ""
    if ticket is None or not bucket or edge.manifests.head_decides(ticket.file_id, ticket.version):
        return None
    now = time.time()
    if now < ticket.issued - TICKET_CLOCK_SKEW or now >= ticket.honoured_until(
        edge.manifests.max_age
    ):
        return None
    manifests = edge.manifests
    kept = manifests.kept_manifest(ticket.file_id, ticket.version)
    if kept is not None:
        return kept
    file_id, version = ticket.file_id, ticket.version
    return Manifest.from_ticket(ticket, bucket, lambda: manifests.confirm(file_id, version))


def _read_early(request: web.Request, edge: EdgeContext, file_id: str, version: str | None) -> None:
    """A cold request that knows its version: its first data range starts now, beside
    the head and manifest reads (``edge_node.early_reads``)."""
    if edge.early is not None and version is not None and not edge.manifests.kept(file_id, version):
        edge.early.start_upload(file_id, version, request.headers.get("Range"))


async def _folder_file(
    request: web.Request, edge: EdgeContext, folder: str, relative: str
) -> Manifest:
    """The current version of the file at ``folder + relative``, from the tree keys and
    the file's head. A kept listing may still name a file deleted since (its path
    taken by another file): then the path is resolved again, fresh, once."""
    entry = await edge.folders.resolve(folder, relative)
    manifest = edge.manifests.fresh(entry.file_id, None)
    if manifest is None:
        _read_early(request, edge, entry.file_id, entry.version)
    try:
        manifest = manifest or await edge.manifests.get(entry.file_id, None, hint=entry.version)
    except (Gone, NotFound):
        again = await edge.folders.resolve(folder, relative, fresh=True)
        if again == entry:
            raise
        manifest = await edge.manifests.get(again.file_id, None, hint=again.version)
    if manifest.path != folder + relative:
        raise NotFound("no such file in the shared folder", path=folder + relative)
    return manifest
