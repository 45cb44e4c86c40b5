"""Presigned S3 GET URLs without a boto3 client.

The edge reads S3 only through presigned URLs of two operations (``get_object``
and ``list_objects_v2``). A boto3 S3 client loads S3's service model and endpoint
rules: about 15 MiB of RSS in every process that builds one, that is in every
worker. Here botocore resolves the credentials and region exactly as boto3 would
(environment, config files, container and instance metadata) and signs with its
SigV4 query signer; only the URL is built here: path style under
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (the local stack, moto), otherwise
S3's regional virtual-hosted endpoint (path style for a bucket name with dots,
as botocore does, since the wildcard certificate does not cover them).
"""

from __future__ import annotations

import os
import re
import threading
from urllib.parse import quote, urlencode

import botocore.session
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import NoCredentialsError, NoRegionError

# The query parameters of each operation's arguments (S3 API reference); what an
# operation does not list here is refused, so a new caller cannot sign a URL that
# silently drops an argument.
_QUERY = {
    "get_object": {"VersionId": "versionId"},
    "list_objects_v2": {
        "Prefix": "prefix",
        "Delimiter": "delimiter",
        "ContinuationToken": "continuation-token",
        "StartAfter": "start-after",
        "MaxKeys": "max-keys",
    },
}
# Bucket names that can be a host name label (no dots: see the module docstring).
_VIRTUAL_HOSTABLE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


class S3Presigner:
    """Signs S3 GET URLs. Blocking while credentials need resolving or refreshing (their
    providers may do I/O): then call it in a thread; ``signs_inline`` tells when not."""

    def __init__(self, endpoint_url: str | None = None) -> None:
        # None: boto3's variables (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL), else S3's own.
        self._endpoint = endpoint_url
        self._lock = threading.Lock()
        self._session: botocore.session.Session | None = None
        # The credentials object once resolved (refreshable ones refresh themselves).
        self._resolved: Credentials | None = None

    def prepare(self) -> None:
        """Resolve the credentials now (blocking: providers read files and metadata)."""
        self._credentials()

    def signs_inline(self) -> bool:
        """Whether signing needs no I/O now, so it may run on the event loop: the
        credentials are resolved and static, or refreshable and not due
        (``refresh_needed`` is botocore's own test before it refreshes)."""
        credentials = self._resolved
        if credentials is None:
            return False
        if isinstance(credentials, RefreshableCredentials):
            return not credentials.refresh_needed()
        return True

    def _credentials(self) -> tuple[ReadOnlyCredentials, str]:
        with self._lock:
            if self._session is None:
                self._session = botocore.session.get_session()
            session = self._session
        credentials = session.get_credentials()
        if credentials is None:
            raise NoCredentialsError()
        self._resolved = credentials
        region = session.get_config_variable("region")
        if not region:
            raise NoRegionError()
        # Frozen: a refreshing provider must not change keys between the two halves.
        return credentials.get_frozen_credentials(), str(region)

    def url(self, operation: str, params: dict[str, str], expires: int) -> str:
        """A presigned GET URL of ``operation`` (``get_object``, ``list_objects_v2``)."""
        names = _QUERY.get(operation)
        if names is None:
            raise ValueError(f"cannot presign {operation}")
        unknown = set(params) - set(names) - {"Bucket", "Key"}
        if unknown or (operation == "get_object") != ("Key" in params):
            raise ValueError(f"cannot presign {operation} with {sorted(params)}")
        credentials, region = self._credentials()
        query: list[tuple[str, str]] = []
        if operation == "list_objects_v2":
            query.append(("list-type", "2"))
        query += [(names[name], value) for name, value in params.items() if name in names]
        if operation == "list_objects_v2":
            # As boto3 does: keys come back URL-encoded (PublishedReader decodes them).
            query.append(("encoding-type", "url"))
        endpoint = (
            self._endpoint
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        url = _object_url(endpoint, params["Bucket"], params.get("Key", ""), region)
        if query:
            url += "?" + urlencode(query, quote_via=quote, safe="~")
        request = AWSRequest(method="GET", url=url)
        S3SigV4QueryAuth(credentials, "s3", region, expires=expires).add_auth(request)
        return str(request.url)


def _object_url(endpoint: str | None, bucket: str, key: str, region: str) -> str:
    path = quote(key, safe="/~")
    if endpoint:
        base = f"{endpoint.rstrip('/')}/{bucket}"
        return f"{base}/{path}" if key else base
    if _VIRTUAL_HOSTABLE.match(bucket):
        return f"https://{bucket}.s3.{region}.amazonaws.com/{path}"
    return f"https://s3.{region}.amazonaws.com/{bucket}/{path}"
