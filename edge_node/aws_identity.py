"""The edge's AWS identity for registration: a ``sts:GetCallerIdentity`` request
signed (SigV4) with the edge's role credentials, handed to the control plane unsent
(docs/PROTOCOL.md, "Node trust"; fsnode_core.node_attestation is the contract).

The request signs the SHA-256 of the CSR's public key too, so it attests a
registration of that key only. With no AWS credentials at all the body carries no
``aws_identity``; a control plane that asks for one then refuses the registration.

The STS endpoint is named here as botocore would name it (``AWS_ENDPOINT_URL_STS``,
``AWS_ENDPOINT_URL``, else the region's ``sts.REGION.amazonaws.com``) rather than
read off an STS client: a client loads STS's service model and endpoint rules, about
8 MiB the node agent would keep for good for one URL.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from fsnode_core.node_attestation import BINDING_HEADER, BODY, CONTENT_TYPE, key_binding

log = logging.getLogger("edge_node.aws_identity")


def signed_caller_identity(
    public_key: PublicKeyTypes,
    session: boto3.session.Session | None = None,
    endpoint_url: str | None = None,
) -> dict[str, Any] | None:
    """``{method, url, headers, body}`` of a signed GetCallerIdentity request bound to
    ``public_key``; None without credentials. Blocking (credential providers may call
    the instance metadata service): run it in a thread."""
    session = session or boto3.session.Session()
    try:
        credentials = session.get_credentials()
        if credentials is None:
            log.warning("no AWS credentials: registering without an AWS identity")
            return None
        region = session.region_name or "us-east-1"
        url = _sts_endpoint(endpoint_url, region)
        request = AWSRequest(
            method="POST",
            url=url,
            data=BODY,
            headers={"Content-Type": CONTENT_TYPE, BINDING_HEADER: key_binding(public_key)},
        )
        SigV4Auth(credentials.get_frozen_credentials(), "sts", region).add_auth(request)
    except BotoCoreError as exc:
        log.warning("cannot sign GetCallerIdentity (%s): registering without it", exc)
        return None
    return {
        "method": "POST",
        "url": url,
        "body": BODY,
        "headers": {name: str(value) for name, value in request.headers.items()},
    }


def _sts_endpoint(endpoint_url: str | None, region: str) -> str:
    """The STS URL boto3 would call: an explicit or configured endpoint, else the
    region's own (China's regions live under amazonaws.com.cn)."""
    configured = (
        endpoint_url or os.environ.get("AWS_ENDPOINT_URL_STS") or os.environ.get("AWS_ENDPOINT_URL")
    )
    if configured:
        return configured.rstrip("/") + "/"
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"https://sts.{region}{suffix}/"
