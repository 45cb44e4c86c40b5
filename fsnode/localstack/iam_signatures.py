"""Who signed a request to the local stack's moto server: a header-signed request as
moto's IAM request class checks it, and a SigV4 presigned S3 URL checked here (moto
cannot read one): its signature, expiry and session token (``iam_enforcement``
authorizes the signer afterwards)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlparse


def header_signed(self: Any, iam_request_cls: type, action: str) -> Any:
    path = self.raw_path
    query = urlparse(self.uri).query
    data = self.data
    if getattr(self, "service_name", "") == "route53" and self.method in ("GET", "HEAD"):
        data = b""  # moto's Route 53 keeps the headers in ``data``: a GET signs no body
    return iam_request_cls(
        account_id=self.current_account,
        method=self.method,
        path=path + (f"?{query}" if query else ""),
        data=data,
        body=self.raw_body,
        headers=self.headers,
        action=action,
    )


def presigned(self: Any, account: str, log: Callable[[str], None]) -> tuple[Any, str] | None:
    """The signer of a SigV4 presigned S3 request and its service, once its signature,
    expiry and session token check out; None when the request carries no signature."""
    from moto.iam.access_control import CreateAccessKeyFailure, create_access_key
    from moto.s3.exceptions import S3AccessDeniedError, S3SignatureDoesNotMatchError

    request = getattr(self, "request", None)
    raw_query = request.environ.get("QUERY_STRING", "") if request is not None else ""
    params = dict(parse_qsl(raw_query, keep_blank_values=True))
    if "X-Amz-Signature" not in params or "X-Amz-Credential" not in params:
        return None
    key_id, _, region, service, _ = (params["X-Amz-Credential"].split("/") + [""] * 5)[:5]
    token = params.get("X-Amz-Security-Token")
    try:
        access_key = create_access_key(
            account_id=account,
            partition="aws",
            access_key_id=key_id,
            headers={"X-Amz-Security-Token": token} if token else {},
        )
    except CreateAccessKeyFailure:
        log(f"iam refused presigned: unknown key {key_id}")
        raise S3AccessDeniedError() from None
    signed_at = datetime.strptime(params.get("X-Amz-Date", ""), "%Y%m%dT%H%M%SZ")
    expires = int(params.get("X-Amz-Expires", "0"))
    if signed_at.replace(tzinfo=UTC).timestamp() + expires < time.time():
        log(f"iam refused presigned: expired (signed {signed_at}, {expires} s)")
        raise S3AccessDeniedError()  # S3: "Request has expired"
    if not query_signature_matches(self, raw_query, params, access_key, region, service):
        log(f"iam refused presigned: signature does not match ({self.method} {self.raw_path})")
        raise S3SignatureDoesNotMatchError()
    return access_key, service


def query_signature_matches(
    self: Any, raw_query: str, params: dict[str, str], access_key: Any, region: str, service: str
) -> bool:
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest

    # As S3 does: values decoded, then encoded the one SigV4 way (a client may send '/'
    # where the signer wrote %2F), sorted.
    kept = "&".join(
        f"{quote(key, safe='-_.~')}={quote(value, safe='-_.~')}"
        for key, value in sorted(parse_qsl(raw_query, keep_blank_values=True))
        if key != "X-Amz-Signature"
    )
    path = quote(unquote(self.raw_path), safe="/~")
    signed = params.get("X-Amz-SignedHeaders", "host").split(";")
    headers = {name: self.headers.get(name, "") for name in signed}
    request = AWSRequest(
        method=self.method,
        url=f"http://{self.headers.get('host', '')}{path}?{kept}",
        headers=headers,
    )
    request.context["timestamp"] = params.get("X-Amz-Date", "")
    auth = S3SigV4QueryAuth(
        access_key.create_credentials(),
        service,
        region,
        expires=int(params.get("X-Amz-Expires", "0")),
    )
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    return bool(expected == params["X-Amz-Signature"])
