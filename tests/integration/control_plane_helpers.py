"""What the control-plane integration tests share: node registration and heartbeats,
uploads through presigned PUTs (and what an upload that ends leaves: nothing), objects
to import, and the error shape."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fsnode_core.catalog import ChunkCatalog
from fsnode_core.chunks import part_layout
from fsnode_core.ids import new_id
from fsnode_core.models import file_pk
from fsnode_core.published import Head
from fsnode_core.published_keys import head_key, tree_folder_prefix, version_manifest_key

from tests.helpers import put_parts
from tests.integration.served_endpoints import ServedEndpoint

_KEY_2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_csr(
    names: list[x509.GeneralName] | None,
    *,
    key: Any = None,
    cn: str | None = None,
) -> str:
    """A PEM CSR with these SANs (None: no SAN extension)."""
    key = key or _KEY_2048
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def ip_san(ip: str) -> x509.GeneralName:
    return x509.IPAddress(ipaddress.ip_address(ip))


def register_body(
    stack: Any, csr: str, endpoint: str = "https://127.0.0.1:8443", **extra: Any
) -> dict[str, Any]:
    return {
        "join_token": stack.join_token,
        "endpoint": endpoint,
        "region": "local",
        "lat": 52.5,
        "lng": 13.4,
        "capacity_bytes": 10**9,
        "csr": csr,
        **extra,
    }


def register(
    api: Any, stack: Any, *, prove: bool = True, endpoint: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A registered node; with ``prove``, its endpoint served (a free loopback port,
    kept serving) and one heartbeat sent, so the node is active (placed). Without, at
    ``endpoint`` (default a port nobody serves): pending."""
    served = ServedEndpoint() if prove else None
    endpoint = served.url if served else (endpoint or "https://127.0.0.1:8443")
    answer = api.call(
        "POST",
        "/nodes/register",
        register_body(stack, make_csr([ip_san("127.0.0.1")]), endpoint, **extra),
        key=False,
    )
    assert answer.status_code == 200, answer.body
    node: dict[str, Any] = answer.json_body
    if served is not None:
        served.serve(_KEY_2048, node["certificate"], node["certificate_chain"])
        beat = send_heartbeat(api, node["node_id"], node["credential"])
        assert beat.status_code == 200 and beat.json_body["status"] == "active", beat.body
        SERVED[node["node_id"]] = served
    return node


# The endpoints ``register`` serves, by node id (a test stops one: the node went away).
SERVED: dict[str, ServedEndpoint] = {}


def node_auth(node: dict[str, Any]) -> dict[str, str]:
    """The headers of a call a registered node makes with its credential."""
    return {"authorization": f"Bearer {node['credential']}"}


def error_of(answer: Any) -> dict[str, Any]:
    body: dict[str, dict[str, Any]] = json.loads(answer.body)
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"])
    return body["error"]


def send_heartbeat(api: Any, node_id: str, credential: str, load: float = 0.5) -> Any:
    return api.call(
        "POST",
        f"/nodes/{node_id}/heartbeat",
        {"used_bytes": 10, "free_bytes": 90, "capacity_bytes": 100, "load": load, "hot_files": []},
        key=False,
        headers={"authorization": f"Bearer {credential}"},
    )


CHUNK = 1024 * 1024


def chunk_hashes(data: bytes, chunk: int = CHUNK) -> list[str]:
    return [hashlib.sha256(data[i : i + chunk]).hexdigest() for i in range(0, len(data), chunk)]


def part_hashes(data: bytes, size: int | None = None, chunk: int = CHUNK) -> list[str]:
    """SHA-256 of each multipart part the control plane lays out for ``size`` bytes
    (``chunk``-byte chunks)."""
    return [
        hashlib.sha256(data[span.offset : span.offset + span.length]).hexdigest()
        for span in part_layout(len(data) if size is None else size, chunk)
    ]


def unique_path(name: str = "movie.mp4") -> str:
    """A path no other test uses (paths name files: the same path is the same file)."""
    return f"tests/{new_id()}/{name}"


def init_body(
    data: bytes,
    *,
    declared: int | None = None,
    path: str | None = None,
    file_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The body of ``POST /files`` for ``data`` (with ``declared``, that many bytes and
    made-up chunk hashes); ``extra`` fields add to it or replace its own. A new file at
    a fresh path unless ``path`` or ``file_id`` names one."""
    size = len(data) if declared is None else declared
    hashes = chunk_hashes(data) if declared is None else ["0" * 64] * (-(-size // CHUNK))
    target = {"file_id": file_id} if file_id else {"path": path or unique_path()}
    return {
        **target,
        "size": size,
        "content_type": "video/mp4",
        "chunk_sha256": hashes,
        "part_sha256": part_hashes(data, size),
        **extra,
    }


def upload(
    api: Any,
    data: bytes,
    *,
    declared: int | None = None,
    path: str | None = None,
    file_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Init (with ``extra`` fields), PUT every part to its presigned URL, complete;
    returns (init, complete answer). A new file at a fresh path unless ``path`` or
    ``file_id`` names one."""
    body = init_body(data, declared=declared, path=path, file_id=file_id, **(extra or {}))
    init = api.call("POST", "/files", body)
    assert init.status_code == 200, init.body
    started = init.json_body
    parts = put_parts(started["parts"], data)
    done = api.call("POST", f"/files/{started['file_id']}/complete", {"parts": parts})
    return started, done


def stale_node(registry: Any, node_id: str, seconds: int) -> None:
    """The node's last heartbeat ``seconds`` ago, as if it stopped beating then."""
    now = int(time.time()) - seconds
    registry.heartbeat(
        node_id,
        used_bytes=0,
        free_bytes=1,
        capacity_bytes=1,
        load=0.0,
        hot_files=[],
        now=now,
        expires_at=now + 10_000,
    )


def live_node(api: Any, stack: Any) -> dict[str, Any]:
    node = register(api, stack)
    beat = api.call(
        "POST",
        f"/nodes/{node['node_id']}/heartbeat",
        {"used_bytes": 0, "free_bytes": 1, "capacity_bytes": 1, "load": 0.0},
        key=False,
        headers=node_auth(node),
    )
    assert beat.status_code == 200
    return node


def put_import_object(
    stack: Any, data: bytes, content_type: str = "video/mp4", key: str | None = None
) -> tuple[str, dict[str, Any]]:
    key = key or f"imports/{new_id()}.mp4"
    put = boto3.client("s3").put_object(
        Bucket=stack.env["FSNODE_BUCKET"], Key=key, Body=data, ContentType=content_type
    )
    return key, put


def chunk_catalog(stack: Any) -> ChunkCatalog:
    """The stack's chunks table, as the control plane's stores see it."""
    return ChunkCatalog(stack.env["FSNODE_CHUNKS_TABLE"], boto3.client("dynamodb"))


def file_items(stack: Any, file_id: str, prefix: str = "") -> list[dict[str, Any]]:
    """Every item of a file in the chunks table (whose sort key starts with ``prefix``),
    all pages."""
    condition, values = "pk = :p", {":p": {"S": file_pk(file_id)}}
    if prefix:
        condition, values = condition + " AND begins_with(sk, :s)", {**values, ":s": {"S": prefix}}
    pages = (
        boto3.client("dynamodb")
        .get_paginator("query")
        .paginate(
            TableName=stack.env["FSNODE_CHUNKS_TABLE"],
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
        )
    )
    return [item for page in pages for item in page["Items"]]


def collect_version(file_id: str, version: str) -> None:
    """What the ``gc`` execution prune starts for a due entry does, for a version no edge
    holds: its steps in order, in-process."""
    from chalicelib import gc

    state = gc.step({"action": "tombstone", "file_id": file_id, "version": version})
    data = gc.step({**state, "action": "delete_data"})
    gc.step({**state, "action": "delete_items", "evicted": [], "data": data})


def assert_nothing_visible(api: Any, stack: Any, started: dict[str, Any]) -> None:
    """No record, no listing, no open multipart upload, the path free again; what the
    upload left (its declaration, any object) is due for collection at once, and once
    collected nothing of it is left."""
    file_id = started["file_id"]
    assert api.call("GET", f"/files/{file_id}").status_code == 404
    listed = api.call("GET", "/files?limit=1000").json_body
    assert file_id not in {f["file_id"] for f in listed["files"]}
    assert [item["sk"]["S"] for item in file_items(stack, file_id)] == [
        f"retired#{started['version']}"
    ]
    if "path" in started:
        claim = (
            boto3.client("dynamodb")
            .get_item(
                TableName=stack.env["FSNODE_CHUNKS_TABLE"],
                Key={"pk": {"S": f"path#{started['path']}"}, "sk": {"S": "claim"}},
            )
            .get("Item")
        )
        assert claim is None or claim["file_id"]["S"] != file_id
    collect_version(file_id, started["version"])
    assert file_items(stack, file_id) == []
    s3 = boto3.client("s3")
    bucket = stack.env["FSNODE_BUCKET"]
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"files/{file_id}/").get("KeyCount") == 0
    assert (
        s3.list_objects_v2(
            Bucket=bucket,
            Prefix=version_manifest_key(file_id, started["version"]),
        ).get("KeyCount")
        == 0
    )
    with pytest.raises(ClientError) as aborted:
        s3.list_parts(
            Bucket=bucket,
            Key=f"files/{file_id}/{started['version']}",
            UploadId=started["upload_id"],
        )
    assert aborted.value.response["Error"]["Code"] == "NoSuchUpload"


# What EventBridge hands a scheduled rule's target.
SCHEDULED_EVENT = {
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "id": "1",
    "time": "2026-01-01T00:00:00Z",
    "region": "us-east-1",
    "account": "000000000000",
    "resources": [],
    "detail": {},
    "version": "0",
}


def scheduled_prune(app: Any) -> dict[str, Any]:
    """One run of the prune Lambda's handler, as its schedule starts it; its summary."""
    from fsnode.localstack.lambda_dispatch import LambdaContext

    summary: dict[str, Any] = app.prune(SCHEDULED_EVENT, LambdaContext("prune", 512, 60))
    return summary


def published_head(stack: Any, file_id: str) -> Head | None:
    """The file's head in S3 (None: none published)."""
    s3 = boto3.client("s3")
    try:
        raw = s3.get_object(Bucket=stack.env["FSNODE_BUCKET"], Key=head_key(file_id))["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    return Head.from_json(raw.read())


def tree_keys(stack: Any, folder: str) -> list[str]:
    """The tree keys under ``folder`` in S3."""
    listed = boto3.client("s3").list_objects_v2(
        Bucket=stack.env["FSNODE_BUCKET"], Prefix=tree_folder_prefix(folder)
    )
    return [o["Key"] for o in listed.get("Contents", [])]
