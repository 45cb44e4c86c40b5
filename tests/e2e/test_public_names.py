"""Public names (issue 19) on a local stack started with ``--domain``: moto's Route 53
and ACM stand in, the local public issuer plays the public CA. The same code runs as
in AWS: records made when a node is placed and removed when it dies, the exported
wildcard certificate handed to edges over their channel and served by SNI."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from cryptography import x509

from fsnode.localstack import processes
from fsnode.localstack import stack as local_stack
from fsnode.localstack.resources import LOCAL_CREDENTIALS
from fsnode.localstack.stack import StackInfo
from tests.e2e.cli_helpers import cli
from tests.e2e.conftest import own_stack

DOMAIN = "example.test"


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    with own_stack(
        tmp_path_factory,
        "public-names",
        "--domain",
        DOMAIN,
        "--nodes",
        "2",
        "--heartbeat-timeout",
        "8",
        "--schedule-seconds",
        "2",
    ) as info:
        yield info


def _route53(stack: StackInfo) -> Any:
    return boto3.client(
        "route53", endpoint_url=stack.aws_endpoint, region_name=stack.region, **LOCAL_CREDENTIALS
    )


def _records(stack: StackInfo) -> dict[str, str]:
    launch = json.loads((Path(stack.state_dir) / "launch" / "api.json").read_text())
    sets = _route53(stack).list_resource_record_sets(
        HostedZoneId=launch["env"]["FSNODE_HOSTED_ZONE_ID"]
    )["ResourceRecordSets"]
    return {
        s["Name"].rstrip("."): s["ResourceRecords"][0]["Value"]
        for s in sets
        if s["Type"] in ("A", "AAAA", "CNAME")
    }


def _handshake(stack: StackInfo, port: int, name: str, cafile: str) -> x509.Certificate:
    """TLS to 127.0.0.1:port as if ``name`` resolved there, verified against ``cafile``."""
    context = ssl.create_default_context(cafile=cafile)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        assert b" 200 " in tls.recv(4096).split(b"\r\n")[0] + b" "
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_each_placed_edge_has_a_record_under_the_domain(named: StackInfo) -> None:
    assert named.edge_domain == f"edges.{DOMAIN}"
    records = _records(named)
    for edge in named.edges:
        assert records[f"{edge.node_id}.edges.{DOMAIN}"] == "127.0.0.1"
    listing = requests.get(
        f"{named.api}/nodes", timeout=30, headers={"authorization": f"Bearer {named.api_key}"}
    ).json()
    assert listing["edge_domain"] == f"edges.{DOMAIN}"
    names = {n["node_id"]: n["public_name"] for n in listing["nodes"]}
    assert names[named.edges[0].node_id] == f"{named.edges[0].node_id}.edges.{DOMAIN}"


def test_the_public_name_serves_a_certificate_the_public_issuer_vouches_for(
    named: StackInfo,
) -> None:
    assert named.public_ca_cert is not None
    for edge in named.edges:
        name = f"{edge.node_id}.edges.{DOMAIN}"
        port = int(edge.url.rsplit(":", 1)[1])
        leaf = _handshake(named, port, name, named.public_ca_cert)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [f"*.edges.{DOMAIN}"]
        # Without the public name (the probe, peers, IP clients) the private-CA
        # identity is served, as before.
        context = ssl.create_default_context(cafile=named.ca_cert)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.getpeercert() is not None
    # The private key is kept only encrypted (Secrets Manager) and never logged.
    logs = "".join(p.read_text() for p in (Path(named.state_dir) / "logs").glob("*.log"))
    assert "PRIVATE KEY" not in logs


def test_share_redirects_name_the_edge_by_its_public_name(named: StackInfo) -> None:
    source = Path(named.state_dir) / f"{os.urandom(4).hex()}.bin"
    source.write_bytes(os.urandom(5000))
    up = cli(named, "upload", str(source), "--share")
    redirect = requests.get(up["share_url"], allow_redirects=False, timeout=30)
    assert redirect.status_code == 307, redirect.text
    host = redirect.headers["Location"].split("/")[2].split(":")[0]
    assert host.endswith(f".edges.{DOMAIN}") and host.split(".")[0] in {
        e.node_id for e in named.edges
    }


def test_a_dead_edges_record_disappears(named: StackInfo) -> None:
    victim = named.edges[-1]
    name = f"{victim.node_id}.edges.{DOMAIN}"
    assert name in _records(named)
    local_stack.kill(Path(named.state_dir), f"edge-{len(named.edges)}", signal.SIGKILL)
    processes.wait_until(
        lambda: name not in _records(named), 90, f"{name} still has a record after its edge died"
    )
    assert f"{named.edges[0].node_id}.edges.{DOMAIN}" in _records(named)
