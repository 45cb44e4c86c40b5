"""Each placed edge's public name, ``NODE_ID.FSNODE_EDGE_DOMAIN`` (issue 19): a Route 53
record in ``FSNODE_HOSTED_ZONE_ID`` made when the node is placed (it proved its
endpoint) and removed when it drains or dies. Share redirects and plans name it, so
viewers reach the edge placement chose under a publicly trusted certificate
(``public_certificate``). Without a domain, every URL is the node's endpoint.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.errors import Unavailable
from fsnode_core.models import NodeRecord
from fsnode_core.store_errors import error_code

from chalicelib import aws
from chalicelib.observability import logger
from chalicelib.settings import get_settings

RECORD_TTL_SECONDS = 60


def enabled() -> bool:
    """Whether edges have public names (a domain and its hosted zone are set)."""
    settings = get_settings()
    return bool(settings.edge_domain and settings.hosted_zone_id)


def name_of(node_id: str) -> str | None:
    """The node's public DNS name, or None without a domain."""
    return f"{node_id}.{get_settings().edge_domain}" if enabled() else None


def url_of(node: NodeRecord) -> str:
    """Where viewers reach the node: ``https://NAME[:PORT]``, else its endpoint."""
    name = name_of(node.node_id)
    if name is None:
        return node.endpoint
    port = urlsplit(node.endpoint).port
    return f"https://{name}" if port in (None, 443) else f"https://{name}:{port}"


def publish(node: NodeRecord) -> None:
    """Create (or keep) the node's record: A/AAAA for an address, else a CNAME."""
    _change("UPSERT", node)


def withdraw(node: NodeRecord) -> None:
    """Remove the node's record (gone already: nothing to do)."""
    _change("DELETE", node)


def _record(node: NodeRecord) -> dict[str, object]:
    host = urlsplit(node.endpoint).hostname or ""
    try:
        kind = "AAAA" if ipaddress.ip_address(host).version == 6 else "A"
    except ValueError:
        kind = "CNAME"
    return {"Name": f"{name_of(node.node_id)}.", "Type": kind, "TTL": RECORD_TTL_SECONDS,
            "ResourceRecords": [{"Value": host}]}


def _change(action: str, node: NodeRecord) -> None:
    if not enabled():
        return
    try:
        aws.client("route53").change_resource_record_sets(
            HostedZoneId=get_settings().hosted_zone_id,
            ChangeBatch={"Comment": f"fsnode node {node.node_id}",
                         "Changes": [{"Action": action, "ResourceRecordSet": _record(node)}]})
    except ClientError as exc:
        if action == "DELETE" and error_code(exc) == "InvalidChangeBatch":
            return  # no such record: withdrawn before
        raise Unavailable("the node's DNS record could not be changed") from exc
    except BotoCoreError as exc:
        raise Unavailable("the node's DNS record could not be changed") from exc
    logger.info("public name changed", extra={"node_id": node.node_id, "action": action,
                                               "public_name": name_of(node.node_id)})
