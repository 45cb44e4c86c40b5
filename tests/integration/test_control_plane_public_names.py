"""Public names against the control plane and an in-process moto (issue 19): records
follow placement, the exported certificate reaches placed nodes only, and a renewal
in ACM is exported again with a new serial that heartbeats announce."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fsnode.localstack import acm_public_issuer
from tests.integration.control_plane_helpers import (
    _KEY_2048,
    error_of,
    ip_san,
    make_csr,
    register,
    register_body,
    send_heartbeat,
    upload,
)
from tests.integration.served_endpoints import ServedEndpoint

DOMAIN = "example.test"
EDGES = f"edges.{DOMAIN}"
REFRESH = "fsnode-test-refresh_public_certificate"


@pytest.fixture()
def public(cp_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The stack with public names: a zone, the exportable wildcard, its secret."""
    from chalicelib import secret_store
    from chalicelib.settings import get_settings

    acm_public_issuer.install()  # the in-process moto server: the local public issuer
    zone = (
        boto3.client("route53")
        .create_hosted_zone(Name=DOMAIN, CallerReference=secrets.token_hex(8))["HostedZone"]["Id"]
        .split("/")[-1]
    )
    arn = boto3.client("acm").request_certificate(
        DomainName=f"*.{EDGES}", ValidationMethod="DNS", Options={"Export": "ENABLED"}
    )["CertificateArn"]
    secret = boto3.client("secretsmanager").create_secret(
        Name=f"fsnode-test/public-{secrets.token_hex(4)}", SecretString="{}"
    )["ARN"]
    settings = {
        "FSNODE_EDGE_DOMAIN": EDGES,
        "FSNODE_HOSTED_ZONE_ID": zone,
        "FSNODE_PUBLIC_CERTIFICATE_ARN": arn,
        "FSNODE_PUBLIC_CERTIFICATE_SECRET": secret,
    }
    lam = boto3.client("lambda")
    before = lam.get_function_configuration(FunctionName=REFRESH)["Environment"]["Variables"]
    lam.update_function_configuration(
        FunctionName=REFRESH, Environment={"Variables": {**before, **settings}}
    )
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    secret_store.clear()
    yield settings
    lam.update_function_configuration(FunctionName=REFRESH, Environment={"Variables": before})
    get_settings.cache_clear()
    secret_store.clear()


def _records(zone: str) -> dict[str, str]:
    sets = boto3.client("route53").list_resource_record_sets(HostedZoneId=zone)[
        "ResourceRecordSets"
    ]
    return {
        s["Name"].rstrip("."): s["ResourceRecords"][0]["Value"] for s in sets if s["Type"] == "A"
    }


def _auth(node: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {node['credential']}"}


def test_a_placed_node_gets_a_record_the_certificate_and_redirects_by_name(
    cp_api: Any, cp_stack: Any, public: dict[str, str]
) -> None:
    node = register(cp_api, cp_stack)  # proves its endpoint: placed
    name = f"{node['node_id']}.{EDGES}"
    assert _records(public["FSNODE_HOSTED_ZONE_ID"])[name] == "127.0.0.1"
    beat = send_heartbeat(cp_api, node["node_id"], node["credential"]).json_body
    assert beat["public_name"] == name and beat["public_certificate_serial"]
    bundle = cp_api.call(
        "GET", f"/nodes/{node['node_id']}/public-certificate", key=False, headers=_auth(node)
    )
    assert bundle.status_code == 200, bundle.body
    got = bundle.json_body
    assert got["name"] == f"*.{EDGES}" and got["serial"] == beat["public_certificate_serial"]
    leaf = x509.load_pem_x509_certificate(got["certificate"].encode())
    root = acm_public_issuer.issuer()[1]
    leaf.verify_directly_issued_by(root)
    key = serialization.load_pem_private_key(got["private_key"].encode(), password=None)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()  # type: ignore[union-attr]
    # The secret holds it; nothing else does.
    stored = json.loads(
        boto3.client("secretsmanager").get_secret_value(
            SecretId=public["FSNODE_PUBLIC_CERTIFICATE_SECRET"]
        )["SecretString"]
    )
    assert stored["serial"] == got["serial"]
    # Shares name the edge by its public name (this node or another placed one).
    started, _ = upload(cp_api, b"x" * 100)
    shared = cp_api.call(
        "POST", f"/files/{started['file_id']}/share", {"ttl_seconds": 600}
    ).json_body
    url = urlsplit(shared["share_url"])
    location = cp_api.call("GET", f"{url.path}?{url.query}", key=False).headers["Location"]
    assert urlsplit(location).hostname.endswith(f".{EDGES}")
    # Draining takes the name away from new viewers.
    assert cp_api.call("POST", f"/nodes/{node['node_id']}/drain").status_code == 200
    assert name not in _records(public["FSNODE_HOSTED_ZONE_ID"])


def test_a_pending_node_gets_no_certificate(
    cp_api: Any, cp_stack: Any, public: dict[str, str]
) -> None:
    served = ServedEndpoint()
    answer = cp_api.call(
        "POST",
        "/nodes/register",
        register_body(cp_stack, make_csr([ip_san("127.0.0.1")], key=_KEY_2048), served.url),
        key=False,
    )
    node = answer.json_body
    refused = cp_api.call(
        "GET", f"/nodes/{node['node_id']}/public-certificate", key=False, headers=_auth(node)
    )
    assert refused.status_code == 403, refused.body
    assert error_of(refused)["details"]["node_status"] == "pending"
    beat = send_heartbeat(cp_api, node["node_id"], node["credential"]).json_body
    assert beat["status"] == "pending" and "public_certificate_serial" not in beat
    assert f"{node['node_id']}.{EDGES}" not in _records(public["FSNODE_HOSTED_ZONE_ID"])
    served.close()


def test_an_acm_renewal_is_exported_with_a_new_serial(
    cp_api: Any, cp_stack: Any, public: dict[str, str]
) -> None:
    from chalicelib import public_certificate
    from moto.acm.models import CertBundle, acm_backends

    node = register(cp_api, cp_stack)
    first = send_heartbeat(cp_api, node["node_id"], node["credential"]).json_body
    assert public_certificate.refresh({}) == {
        "changed": False,
        "serial": first["public_certificate_serial"],
    }
    # ACM renews in place: the same ARN, a new certificate and serial.
    arn = public["FSNODE_PUBLIC_CERTIFICATE_ARN"]
    backend = acm_backends["123456789012"]["us-east-1"]
    renewed = CertBundle.generate_cert(f"*.{EDGES}", account_id="123456789012", region="us-east-1")
    renewed.arn = arn
    renewed.cert_options["Export"] = "ENABLED"
    backend._certificates[arn] = renewed
    changed = public_certificate.refresh({})
    assert changed["changed"] and changed["serial"] != first["public_certificate_serial"]
    from chalicelib import secret_store

    secret_store.clear()
    second = send_heartbeat(cp_api, node["node_id"], node["credential"]).json_body
    assert second["public_certificate_serial"] == changed["serial"]


def test_without_a_domain_there_is_no_public_certificate(cp_api: Any, cp_stack: Any) -> None:
    node = register(cp_api, cp_stack)
    answer = cp_api.call(
        "GET", f"/nodes/{node['node_id']}/public-certificate", key=False, headers=_auth(node)
    )
    assert answer.status_code == 404, answer.body
    assert "no public names" in error_of(answer)["message"]
    beat = send_heartbeat(cp_api, node["node_id"], node["credential"])
    assert "public_name" not in beat.json_body
    listing = cp_api.call("GET", "/nodes").json_body
    assert listing["edge_domain"] is None
