"""The files the package's edge serves, and reading its answers."""

from __future__ import annotations

import os
import re

import requests

from edge_node.manifest import Manifest
from tests.integration.edge_fixtures import EdgeServer
from tests.integration.edge_publishing import put_file

BUCKET = "fsnode-edge-test"
CHUNK = 64 * 1024
DATA = os.urandom(3 * CHUNK + 12_345)  # three whole chunks and a short one


def publish(edge: EdgeServer, data: bytes = DATA) -> Manifest:
    return put_file(BUCKET, data, CHUNK)


def file_url(edge: EdgeServer, manifest: Manifest) -> str:
    return f"{edge.url}/f/{manifest.file_id}"


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


def byte_ranges(spans: list[tuple[int, int]]) -> dict[str, str]:
    return {"Range": "bytes=" + ",".join(f"{first}-{last}" for first, last in spans)}


def multipart(answer: requests.Response) -> list[tuple[str, bytes]]:
    """(Content-Range, body) of each part of a multipart/byteranges answer."""
    match = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", answer.headers["Content-Type"])
    assert match, answer.headers["Content-Type"]
    assert int(answer.headers["Content-Length"]) == len(answer.content)
    raw_parts = answer.content.split(b"--" + match.group(1).encode())
    assert raw_parts[0] == b"" and raw_parts[-1] == b"--\r\n"
    parts = []
    for raw in raw_parts[1:-1]:
        head, body = raw.split(b"\r\n\r\n", 1)
        content_range = re.search(rb"Content-Range: (bytes \S+)", head)
        assert content_range and body.endswith(b"\r\n")
        parts.append((content_range.group(1).decode(), body[:-2]))
    return parts
