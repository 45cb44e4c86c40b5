"""Who a registering edge is in AWS: its signed ``sts:GetCallerIdentity`` request,
sent to STS here (fsnode_core.node_attestation has the contract both sides share).

Only the signature's owner could have made the request, STS says whose it is, and
the CSR's key is among what was signed: an edge proves it runs with the edge role's
credentials (the ECS task role in AWS; the same role in the local stack's moto,
which checks signatures), not that it knows a shared secret.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any

from fsnode_core.errors import Forbidden, InvalidInput, Unauthorized, Unavailable
from fsnode_core.node_attestation import BINDING_HEADER, BODY, FORWARDED_HEADERS

from chalicelib.observability import logger
from chalicelib.settings import get_settings

# Any region's STS endpoint (each answers for the same identities); no other host is
# ever sent a request (the URL comes from the caller).
_AWS_STS = re.compile(r"https://sts(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?")
_ROLE = re.compile(r"arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)")
_MAX_HEADER = 8192
STS_TIMEOUT_SECONDS = 5.0


def verify(proof: Any, key_binding: str) -> str | None:
    """The assumed-role ARN that signed ``proof`` when the settings name an edge role
    (None when they do not: the join token is then the only factor). Unauthorized for
    a missing or bad proof, Forbidden for another identity than the edge role."""
    role_arn = get_settings().edge_role_arn
    if not role_arn:
        return None
    if proof is None:
        raise Unauthorized("aws_identity (a signed sts:GetCallerIdentity request) is required",
                           field="aws_identity")
    url, headers = _checked(proof, key_binding)
    arn = _caller_arn(url, headers)
    if not arn.startswith(assumed_role_prefix(role_arn)):
        logger.warning("registration by another AWS identity", extra={"arn": arn})
        raise Forbidden("this AWS identity is not the edge role", field="aws_identity")
    return arn


def assumed_role_prefix(role_arn: str) -> str:
    """``arn:aws:sts::ACCOUNT:assumed-role/NAME/``: how STS names a session of the role."""
    match = _ROLE.fullmatch(role_arn)
    if match is None:
        raise Unavailable("FSNODE_EDGE_ROLE_ARN is not an IAM role ARN")
    partition, account, name = match.groups()
    return f"arn:{partition}:sts::{account}:assumed-role/{name}/"


def _checked(proof: Any, key_binding: str) -> tuple[str, dict[str, str]]:
    def bad(message: str) -> InvalidInput:
        return InvalidInput(f"aws_identity: {message}", field="aws_identity")

    if not isinstance(proof, dict) or not isinstance(proof.get("headers"), dict):
        raise bad("must be {method, url, headers, body}")
    if proof.get("method") != "POST" or proof.get("body") != BODY:
        raise bad(f"must be POST with the body {BODY}")
    url = str(proof.get("url") or "").rstrip("/")
    if url != get_settings().sts_endpoint and not _AWS_STS.fullmatch(url):
        raise bad("url is not an STS endpoint")
    raw = proof["headers"]
    if len(raw) > 32 or not all(isinstance(k, str) and isinstance(v, str)
                                and len(v) <= _MAX_HEADER for k, v in raw.items()):
        raise bad("headers must be a few strings")
    headers = {k.lower(): v for k, v in raw.items() if k.lower() in FORWARDED_HEADERS}
    signed = re.search(r"SignedHeaders=([a-z0-9;-]+)", headers.get("authorization", ""))
    if signed is None or BINDING_HEADER.lower() not in signed.group(1).split(";"):
        raise bad(f"the signature must cover {BINDING_HEADER}")
    if headers.get(BINDING_HEADER.lower()) != key_binding:
        raise bad(f"{BINDING_HEADER} must be the SHA-256 of the CSR's public key")
    return url + "/", headers


def _caller_arn(url: str, headers: dict[str, str]) -> str:
    request = urllib.request.Request(url, data=BODY.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=STS_TIMEOUT_SECONDS) as answer:
            document = answer.read(64 * 1024)
    except urllib.error.HTTPError as exc:
        if exc.code in (400, 403):
            raise Unauthorized("STS did not accept the signed GetCallerIdentity request",
                               field="aws_identity", sts_status=exc.code) from exc
        raise Unavailable("STS could not be asked who signed the request") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise Unavailable("STS could not be asked who signed the request") from exc
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise Unavailable("STS answered something other than XML") from exc
    arn = next((el.text for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Arn"), None)
    if not arn:
        raise Unavailable("STS answered without an Arn")
    return arn.strip()
