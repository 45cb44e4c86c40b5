"""Reading a local stack's files at its edges as a player would, for the e2e fault
tests: imported files and their shares, raw GETs that see a cut body, edge metrics."""

from __future__ import annotations

import http.client
import os
import ssl
from urllib.parse import urlparse

import boto3
import requests

from fsnode.client import FsnodeClient
from fsnode.localstack.resources import LOCAL_CREDENTIALS
from fsnode.localstack.stack import StackInfo
from fsnode.settings import ClientSettings


def stack_client(stack: StackInfo) -> FsnodeClient:
    return FsnodeClient(ClientSettings(api_url=stack.api, api_key=stack.api_key, ca_cert=None))


def imported(stack: StackInfo, key: str, size: int) -> tuple[bytes, str, str]:
    """Put ``size`` random bytes at ``key``, import them: the bytes, file id, share URL."""
    data = os.urandom(size)
    s3 = boto3.client(
        "s3", endpoint_url=stack.aws_endpoint, region_name=stack.region, **LOCAL_CREDENTIALS
    )
    s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
    client = stack_client(stack)
    file_id = client.import_object(stack.bucket, key)["file_id"]
    return data, file_id, client.share(file_id, 3600)["share_url"]


def edge_url_of(share_url: str) -> str:
    redirect = requests.get(share_url, allow_redirects=False, timeout=30)
    assert redirect.status_code == 307, redirect.text
    return redirect.headers["Location"]


def raw_get(
    stack: StackInfo, url: str, range_header: str | None = None
) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers, body, and whether the body was complete (Content-Length met).

    http.client rather than requests: a body cut short must be seen as such, with the
    bytes that did arrive. The socket timeout turns a hang into a failure.
    """
    parsed = urlparse(url)
    assert parsed.hostname is not None, url
    context = ssl.create_default_context(cafile=stack.ca_cert)
    conn = http.client.HTTPSConnection(parsed.hostname, parsed.port, context=context, timeout=60)
    try:
        headers = {"Range": range_header} if range_header else {}
        conn.request("GET", f"{parsed.path}?{parsed.query}", headers=headers)
        response = conn.getresponse()
        head = {name.lower(): value for name, value in response.getheaders()}
        try:
            return response.status, head, response.read(), True
        except http.client.IncompleteRead as exc:
            return response.status, head, exc.partial, False
    finally:
        conn.close()


def edge_metric(stack: StackInfo, edge_url: str, name: str) -> float:
    text = requests.get(f"{edge_url}/metrics", verify=stack.ca_cert, timeout=10).text
    for line in text.splitlines():
        if line.startswith(f"fsnode_edge_{name} "):
            return float(line.split()[1])
    return 0.0


def edge_base(url: str) -> str:
    return url[: url.index("/f/")]
