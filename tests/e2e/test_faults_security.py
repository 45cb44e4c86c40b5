"""Security properties of the running local stack: where the share-signing key lives,
which TLS versions the edges speak, and what the logs must never hold.

Uses the session's stack (``tests/e2e/conftest.py``), after it has done real work.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import struct
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from fsnode_core.nodes_store import NodeRegistry
from fsnode_core.signing import parse_keyring

from fsnode.localstack.resources import LOCAL_CREDENTIALS
from fsnode.localstack.stack import StackInfo
from tests.e2e.cli_helpers import MIB, cli, random_file, sha

CREDENTIAL_DOMAIN = b"fsnode-node-credential-v1"  # docs/PROTOCOL.md, node credentials


def _launch_env(stack: StackInfo, name: str) -> dict[str, str]:
    spec = json.loads((Path(stack.state_dir) / "launch" / f"{name}.json").read_text())
    return dict(spec["env"])


def _aws(stack: StackInfo, service: str) -> Any:
    # The service is named at run time (the stubs type only literal names).
    return boto3.client(  # type: ignore[call-overload]
        service, endpoint_url=stack.aws_endpoint, region_name=stack.region, **LOCAL_CREDENTIALS
    )


def _b64_forms(raw: bytes) -> list[bytes]:
    return [
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
    ]


@pytest.fixture(scope="module")
def keyring(stack: StackInfo) -> dict[str, Any]:
    """The share-signing keyring as the control plane reads it from Secrets Manager."""
    secret_id = _launch_env(stack, "api")["FSNODE_SIGNING_KEY_SECRET"]
    value = _aws(stack, "secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    seeds = {kid: seed for kid, seed in json.loads(value).items() if kid != "active"}
    active, keys = parse_keyring(value)
    raws = {
        kid: key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        for kid, key in keys.items()
    }
    return {"active": active, "seeds": seeds, "raws": raws, "keys": keys}


def _private_forms(keyring: dict[str, Any]) -> dict[str, bytes]:
    """Every shape the private signing material could be written in, by label."""
    forms: dict[str, bytes] = {}
    for kid, seed in keyring["seeds"].items():
        forms[f"{kid} seed"] = str(seed).encode()
        raw = keyring["raws"][kid]
        forms[f"{kid} raw"] = raw
        forms[f"{kid} hex"] = raw.hex().encode()
        for i, form in enumerate(_b64_forms(raw)):
            forms[f"{kid} base64 {i}"] = form
        der = keyring["keys"][kid].private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        forms[f"{kid} pkcs8"] = base64.b64encode(der)
    return forms


def _found(blob: bytes, forms: dict[str, bytes]) -> list[str]:
    return [label for label, form in forms.items() if form and form in blob]


@pytest.fixture(scope="module")
def traffic(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real work through every part first: upload, share, redirect, edge reads, a plan."""
    folder = tmp_path_factory.mktemp("security")
    original = random_file(folder, "secret-scan.bin", 5 * MIB + 7)
    up = cli(stack, "upload", str(original), "--share")
    redirect = requests.get(up["share_url"], allow_redirects=False, timeout=30)
    assert redirect.status_code == 307, redirect.text
    edge_url = redirect.headers["Location"]
    got = requests.get(edge_url, headers={"Range": "bytes=0-99"}, verify=stack.ca_cert, timeout=60)
    assert got.status_code == 206
    out = folder / "secret-scan.out"
    cli(stack, "get", up["id"], "-o", str(out))
    assert sha(out) == sha(original)
    return {"file_id": up["id"], "edge_url": edge_url}


def test_the_share_signing_key_lives_only_in_the_control_plane(
    stack: StackInfo, keyring: dict[str, Any], traffic: dict[str, str]
) -> None:
    forms = _private_forms(keyring)
    # The scan can find what it looks for: the keyring's own JSON holds every seed.
    assert len(_found(json.dumps(keyring["seeds"]).encode(), forms)) == len(keyring["seeds"])

    for index, edge in enumerate(stack.edges):
        files = [p for p in Path(edge.state_dir).rglob("*") if p.is_file()]
        assert any(p.name.endswith(".crt") for p in files), "the scan sees the edge's state"
        for path in files:
            assert not _found(path.read_bytes(), forms), f"signing key material in {path}"
        environ = Path(f"/proc/{edge.pid}/environ").read_bytes()
        assert b"FSNODE_JOIN_TOKEN=" in environ  # the edge's real environment, read whole
        assert not _found(environ, forms), f"signing key material in edge-{index + 1}'s env"
        launch = json.dumps(_launch_env(stack, f"edge-{index + 1}")).encode()
        assert not _found(launch, forms)

    # The edges verify with the public keys only, yet verify they do: a forged signature fails.
    good = requests.get(traffic["edge_url"], headers={"Range": "bytes=0-0"},
                        verify=stack.ca_cert, timeout=30)  # fmt: skip
    assert good.status_code == 206
    forged = traffic["edge_url"].replace("sig=", "sig=A", 1)
    bad = requests.get(forged, headers={"Range": "bytes=0-0"}, verify=stack.ca_cert, timeout=30)
    assert bad.status_code == 403


# -- TLS versions -------------------------------------------------------------------------

# TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, ..._AES_128_CBC_SHA, ..._AES_256_CBC_SHA,
# TLS_RSA_WITH_AES_128_CBC_SHA: suites a TLS 1.0-1.2 client offers.
_SUITES = (0xC02F, 0xC013, 0xC014, 0x002F)


def _client_hello(version: int) -> bytes:
    """A ClientHello offering only ``version`` (no supported_versions extension), built
    by hand so the local OpenSSL's own minimum cannot stop the probe from being sent."""

    def ext(kind: int, body: bytes) -> bytes:
        return struct.pack("!HH", kind, len(body)) + body

    groups = struct.pack("!HHH", 4, 0x001D, 0x0017)  # x25519, secp256r1
    sig_algs = struct.pack("!HHHH", 6, 0x0401, 0x0804, 0x0403)
    extensions = ext(0x000A, groups) + ext(0x000B, b"\x01\x00") + ext(0x000D, sig_algs)
    suites = struct.pack(f"!H{len(_SUITES)}H", 2 * len(_SUITES), *_SUITES)
    body = (
        struct.pack("!H", version)
        + os.urandom(32)
        + b"\x00"  # no session id
        + suites
        + b"\x01\x00"  # null compression only
        + struct.pack("!H", len(extensions))
        + extensions
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def _first_record(edge_url: str, hello: bytes) -> tuple[int | None, bytes]:
    """The record type and first bytes of the server's answer to ``hello``; (None, b"")
    when it closes the connection without a record."""
    parsed = urlparse(edge_url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(hello)
        head = b""
        while len(head) < 7:
            data = sock.recv(7 - len(head))
            if not data:
                break
            head += data
    if not head:
        return None, b""
    assert len(head) >= 5, f"a truncated TLS record: {head!r}"
    return head[0], head[5:]


@pytest.mark.parametrize(("version", "name"), [(0x0302, "TLS 1.1"), (0x0301, "TLS 1.0")])
def test_edges_refuse_tls_older_than_1_2(stack: StackInfo, version: int, name: str) -> None:
    for edge in stack.edges:
        kind, payload = _first_record(edge.url, _client_hello(version))
        # Refused: the connection closes, or a fatal protocol_version alert (21; 2, 70)
        # comes back. Never a handshake record (22), which would carry a ServerHello.
        refused = kind is None or (kind == 21 and payload == b"\x02\x46")
        assert refused, f"{edge.url} answered a {name} hello with record {kind}: {payload!r}"


def test_the_same_probe_gets_a_server_hello_at_tls_1_2(stack: StackInfo) -> None:
    # The hand-built hello is sound: at 1.2 it gets a handshake record (ServerHello) back.
    kind, payload = _first_record(stack.edges[0].url, _client_hello(0x0303))
    assert (kind, payload[:1]) == (22, b"\x02")
    for maximum, expected in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (None, "TLSv1.3")):
        context = ssl.create_default_context(cafile=stack.ca_cert)
        if maximum is not None:
            context.maximum_version = maximum
        parsed = urlparse(stack.edges[0].url)
        with (
            socket.create_connection((parsed.hostname, parsed.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=parsed.hostname) as tls,
        ):
            assert tls.version() == expected


# -- logs ---------------------------------------------------------------------------------


def _node_credential(raw_key: bytes, node_id: str) -> str:
    key = hmac.new(raw_key, CREDENTIAL_DOMAIN, hashlib.sha256).digest()
    mac = hmac.new(key, node_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def test_no_secret_or_credential_in_any_log(
    stack: StackInfo, keyring: dict[str, Any], traffic: dict[str, str]
) -> None:
    secrets: dict[str, bytes] = dict(_private_forms(keyring))
    secrets["api key"] = stack.api_key.encode()
    edge_env = _launch_env(stack, "edge-1")
    secrets["join token"] = edge_env["FSNODE_JOIN_TOKEN"].encode()
    # The edge role's credentials: its registration carries a request signed with them
    # (the session token in it), which the control plane forwards to STS.
    secrets["edge secret key"] = edge_env["AWS_SECRET_ACCESS_KEY"].encode()
    secrets["edge session token"] = edge_env["AWS_SESSION_TOKEN"].encode()
    api_env = _launch_env(stack, "api")
    registry = NodeRegistry(api_env["FSNODE_NODES_TABLE"], client=_aws(stack, "dynamodb"))
    for node in registry.list_nodes():
        # Derived as PROTOCOL.md says; the table's hash proves it is the real credential.
        matches = [
            credential
            for raw in keyring["raws"].values()
            if hashlib.sha256(
                (credential := _node_credential(raw, node.node_id)).encode()
            ).hexdigest()
            == node.credential_sha256
        ]
        assert matches, f"cannot derive node {node.node_id}'s credential"
        secrets[f"credential of {node.node_id}"] = matches[0].encode()

    logs = sorted((Path(stack.state_dir) / "logs").glob("*.log"))
    names = {log.name for log in logs}
    assert {"aws.log", "api.log", "edge-1.log"} <= names, names
    everything = b""
    for log in logs:
        text = log.read_bytes()
        everything += text
        leaked = _found(text, secrets)
        assert not leaked, f"{log.name} holds: {', '.join(leaked)}"
    # The logs are the real ones, with this run's work in them.
    assert traffic["file_id"].encode() in everything
    assert all(edge.node_id.encode() in everything for edge in stack.edges)
