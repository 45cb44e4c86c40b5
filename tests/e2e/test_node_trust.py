"""Node trust on the running local stack (issue 17.1): the attacks of the issue, as a
holder of the join token and of the edge role's credentials would try them."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import boto3
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from edge_node.aws_identity import signed_caller_identity
from fsnode.localstack import processes
from fsnode.localstack.stack import StackInfo


def _edge_env(stack: StackInfo) -> dict[str, str]:
    spec = json.loads((Path(stack.state_dir) / "launch" / "edge-1.json").read_text())
    return dict(spec["env"])


def _body(
    stack: StackInfo, endpoint: str, *, attested: bool = True, forged: bool = False
) -> dict[str, Any]:
    env = _edge_env(stack)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    host = endpoint.split("//")[1].rsplit(":", 1)[0].strip("[]")
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    body: dict[str, Any] = {
        "join_token": env["FSNODE_JOIN_TOKEN"],
        "endpoint": endpoint,
        "region": "local",
        "capacity_bytes": 1,
        "csr": csr,
    }
    if attested:
        session = boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key="forged" if forged else env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=env["AWS_SESSION_TOKEN"],
            region_name=stack.region,
        )
        body["aws_identity"] = signed_caller_identity(key.public_key(), session, stack.aws_endpoint)
    return body


def _register(stack: StackInfo, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{stack.api}/nodes/register", json=body, timeout=60)


def test_every_edge_is_placed_with_its_identity(stack: StackInfo) -> None:
    nodes = requests.get(
        f"{stack.api}/nodes", timeout=30, headers={"authorization": f"Bearer {stack.api_key}"}
    ).json()["nodes"]
    by_id = {node["node_id"]: node for node in nodes}
    for edge in stack.edges:
        assert by_id[edge.node_id]["status"] == "active"
        assert by_id[edge.node_id]["endpoint"] == edge.url


def test_a_live_edges_endpoint_cannot_be_registered(stack: StackInfo) -> None:
    answer = _register(stack, _body(stack, stack.edges[0].url))
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "conflict"


def test_names_outside_the_namespace_get_no_certificate(stack: StackInfo) -> None:
    for endpoint in ("https://www.example.com:443", "https://8.8.8.8:443"):
        answer = _register(stack, _body(stack, endpoint))
        assert answer.status_code == 403, answer.text
        assert "namespace" in answer.json()["error"]["message"]
        assert "certificate" not in answer.text


def test_the_join_token_alone_does_not_register(stack: StackInfo) -> None:
    endpoint = f"https://127.0.0.1:{processes.free_port()}"
    missing = _register(stack, _body(stack, endpoint, attested=False))
    assert missing.status_code == 401, missing.text
    assert missing.json()["error"]["details"]["field"] == "aws_identity"
    # Signed with the edge role's access key id but not its secret: STS (moto, which
    # checks signatures here as AWS does) refuses it.
    forged = _register(stack, _body(stack, endpoint, forged=True))
    assert forged.status_code == 401, forged.text


def test_a_new_node_gets_no_redirect_before_it_proves_its_endpoint(stack: StackInfo) -> None:
    """It registers (attested) at a free port nobody serves: it stays pending, so no
    share, plan or work names it, and its beats say so."""
    endpoint = f"https://127.0.0.1:{processes.free_port()}"
    answer = _register(stack, _body(stack, endpoint))
    assert answer.status_code == 200, answer.text
    node = answer.json()
    beat = requests.post(
        f"{stack.api}/nodes/{node['node_id']}/heartbeat",
        timeout=30,
        headers={"authorization": f"Bearer {node['credential']}"},
        json={"used_bytes": 0, "free_bytes": 1, "capacity_bytes": 1, "load": 0},
    )
    assert beat.status_code == 200 and beat.json()["status"] == "pending", beat.text
    cluster = requests.get(
        f"{stack.api}/cluster", timeout=30, headers={"authorization": f"Bearer {stack.api_key}"}
    ).json()
    listed = {n["node_id"]: n for n in cluster["nodes"]}
    assert listed[node["node_id"]]["status"] == "pending"
    assert not listed[node["node_id"]]["live"]
