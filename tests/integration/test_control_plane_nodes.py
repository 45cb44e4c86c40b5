"""Node routes against a real moto server: register (CSR rules), heartbeat, manifest, list."""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tests.integration.control_plane_helpers import (
    SERVED,
    error_of,
    ip_san,
    make_csr,
    register,
    register_body,
    send_heartbeat,
)


def test_register_issues_a_certificate_for_the_endpoint_host(cp_api: Any, cp_stack: Any) -> None:
    node = register(cp_api, cp_stack)
    cert = x509.load_pem_x509_certificate(node["certificate"].encode())
    root = x509.load_pem_x509_certificate(node["root_certificate"].encode())
    assert node["root_certificate"].strip() == cp_stack.root_pem.strip()
    # The leaf chains to the CA root: the root's key verifies the leaf's signature.
    # The local CA's key is RSA (PKCS#1 v1.5), and its signatures name their hash.
    cast(rsa.RSAPublicKey, root.public_key()).verify(
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PKCS1v15(),
        cast(hashes.HashAlgorithm, cert.signature_hash_algorithm),
    )
    assert cert.issuer == root.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert len(node["node_id"]) == 32 and node["credential"]
    assert list(node["share_public_keys"]) == ["k1"]
    assert node["chunk_size"] == 1024 * 1024 and node["bucket"] == "fsnode-test-origin"


def test_register_accepts_a_dns_endpoint_with_an_ec_key(cp_api: Any, cp_stack: Any) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = make_csr([x509.DNSName("edge-1.example.net")], key=key, cn="edge-1.example.net")
    answer = cp_api.call(
        "POST",
        "/nodes/register",
        register_body(cp_stack, csr, "https://edge-1.example.net:443"),
        key=False,
    )
    assert answer.status_code == 200, answer.body
    cert = x509.load_pem_x509_certificate(answer.json_body["certificate"].encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["edge-1.example.net"]


def test_the_ca_signs_an_ec_csr_with_its_own_rsa_algorithm(cp_env: Any) -> None:
    """ACM Private CA refuses a signing algorithm of another key type than the CA's
    (the local stack's moto refuses it too): the issuer follows the CA, not the CSR."""
    import boto3
    from botocore.exceptions import ClientError
    from chalicelib import issuer

    csr = make_csr([ip_san("127.0.0.1")], key=ec.generate_private_key(ec.SECP256R1()))
    pca = boto3.client("acm-pca")
    with pytest.raises(ClientError) as refused:
        pca.issue_certificate(
            CertificateAuthorityArn=cp_env.ca_arn,
            Csr=csr.encode(),
            SigningAlgorithm="SHA256WITHECDSA",
            Validity={"Value": 1, "Type": "DAYS"},
        )
    assert refused.value.response["Error"]["Code"] == "InvalidArgsException"
    issuer.signing_algorithm.cache_clear()
    assert issuer.signing_algorithm(cp_env.ca_arn) == "SHA256WITHRSA"


@pytest.mark.parametrize(
    ("csr_factory", "endpoint"),
    [
        pytest.param(
            lambda: make_csr([ip_san("10.9.9.9")]), "https://127.0.0.1:8443", id="wrong-host"
        ),
        pytest.param(
            lambda: make_csr([ip_san("127.0.0.1"), x509.DNSName("evil.example")]),
            "https://127.0.0.1:8443",
            id="extra-san",
        ),
        pytest.param(
            lambda: make_csr([x509.DNSName("*.example.net")]),
            "https://edge.example.net:443",
            id="wildcard-san",
        ),
        pytest.param(
            lambda: make_csr([x509.DNSName("edge.example.net")]),
            "https://*.example.net:443",
            id="wildcard-endpoint",
        ),
        pytest.param(
            lambda: make_csr([x509.DNSName("127.0.0.1")]),
            "https://127.0.0.1:8443",
            id="ip-as-dns-san",
        ),
        pytest.param(lambda: make_csr(None), "https://127.0.0.1:8443", id="no-san"),
        pytest.param(
            lambda: make_csr([ip_san("127.0.0.1")], cn="other.example"),
            "https://127.0.0.1:8443",
            id="other-common-name",
        ),
        pytest.param(
            lambda: make_csr(
                [ip_san("127.0.0.1")],
                key=rsa.generate_private_key(public_exponent=65537, key_size=1024),
            ),
            "https://127.0.0.1:8443",
            id="rsa-1024",
        ),
        pytest.param(
            lambda: make_csr([ip_san("127.0.0.1")], key=ec.generate_private_key(ec.SECP384R1())),
            "https://127.0.0.1:8443",
            id="ec-p384",
        ),
        pytest.param(
            lambda: (
                "-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n-----END CERTIFICATE REQUEST-----\n"
            ),
            "https://127.0.0.1:8443",
            id="garbage",
        ),
        pytest.param(
            lambda: make_csr([ip_san("127.0.0.1")]),
            "http://127.0.0.1:8443",
            id="plain-http-endpoint",
        ),
        pytest.param(
            lambda: make_csr([ip_san("127.0.0.1")]), "https://127.0.0.1:8443/x", id="endpoint-path"
        ),
        pytest.param(
            lambda: make_csr([ip_san("127.0.0.1")]), "https://127.0.0.1", id="endpoint-no-port"
        ),
    ],
)
def test_register_rejects_bad_csrs_and_endpoints(
    cp_api: Any, cp_stack: Any, csr_factory: Any, endpoint: str
) -> None:
    answer = cp_api.call(
        "POST", "/nodes/register", register_body(cp_stack, csr_factory(), endpoint), key=False
    )
    assert answer.status_code == 400, answer.body
    assert error_of(answer)["code"] == "invalid_input"


def test_register_rejects_a_bad_join_token(cp_api: Any, cp_stack: Any) -> None:
    body = register_body(cp_stack, make_csr([ip_san("127.0.0.1")]))
    body["join_token"] = secrets.token_urlsafe(32)
    answer = cp_api.call("POST", "/nodes/register", body, key=False)
    assert answer.status_code == 401
    assert error_of(answer)["code"] == "unauthorized"


def test_register_is_idempotent_per_key(cp_api: Any, cp_stack: Any) -> None:
    from chalicelib import aws

    issued: list[str] = []

    def count(**_: Any) -> None:
        issued.append("IssueCertificate")

    pca = aws.client("acm-pca")
    pca.meta.events.register("before-send.acm-pca.IssueCertificate", count)
    try:
        key = secrets.token_hex(16)
        first = register(cp_api, cp_stack, prove=False, idempotency_key=key)
        second = register(cp_api, cp_stack, prove=False, idempotency_key=key)
        assert first["node_id"] == second["node_id"]
        assert first["credential"] == second["credential"]
        assert first["certificate"] == second["certificate"]
        assert issued == ["IssueCertificate"]  # the CA signed once
        third = register(cp_api, cp_stack, prove=False, idempotency_key=secrets.token_hex(16))
        assert third["node_id"] != first["node_id"]
    finally:
        pca.meta.events.unregister("before-send.acm-pca.IssueCertificate", count)


def test_a_replayed_register_is_one_for_the_same_endpoint_and_key(
    cp_api: Any, cp_stack: Any
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    idempotency_key = secrets.token_hex(16)

    def attempt(csr_key: Any, endpoint: str = "https://127.0.0.1:8443") -> dict[str, Any]:
        # ECDSA signatures are randomized: every CSR differs, even for the same key.
        body = register_body(
            cp_stack,
            make_csr([ip_san("127.0.0.1")], key=csr_key),
            endpoint,
            idempotency_key=idempotency_key,
        )
        answer = cp_api.call("POST", "/nodes/register", body, key=False)
        assert answer.status_code == 200, answer.body
        registered: dict[str, Any] = answer.json_body
        return registered

    first = attempt(key)
    assert attempt(key)["node_id"] == first["node_id"]  # a restart: same key, new CSR
    # A lost key or a moved endpoint is a new node, with a certificate for the new key.
    new_key = ec.generate_private_key(ec.SECP256R1())
    moved = attempt(new_key)
    assert moved["node_id"] != first["node_id"]
    cert = x509.load_pem_x509_certificate(moved["certificate"].encode())
    leaf_key = cast(ec.EllipticCurvePublicKey, cert.public_key())  # the CSR's key: EC
    assert leaf_key.public_numbers() == new_key.public_key().public_numbers()
    assert attempt(key, "https://127.0.0.1:9443")["node_id"] not in (
        first["node_id"],
        moved["node_id"],
    )


def test_a_replayed_register_with_other_details_is_a_conflict(cp_api: Any, cp_stack: Any) -> None:
    """The same idempotency key with a different request answers 409 (the edge then
    picks a new key), never the node registered with the first request's details."""
    key = ec.generate_private_key(ec.SECP256R1())
    idempotency_key = secrets.token_hex(16)

    def attempt(**changes: Any) -> Any:
        body = register_body(
            cp_stack, make_csr([ip_san("127.0.0.1")], key=key), idempotency_key=idempotency_key
        )
        return cp_api.call("POST", "/nodes/register", {**body, **changes}, key=False)

    first = attempt()
    assert first.status_code == 200, first.body
    assert attempt().json_body["node_id"] == first.json_body["node_id"]  # a true replay
    for changes in (
        {"capacity_bytes": 2 * 10**9},
        {"region": "eu-west-1"},
        {"lat": 10.0},
        {"lng": None},
    ):
        answer = attempt(**changes)
        assert answer.status_code == 409, (changes, answer.body)
        error = error_of(answer)
        assert error["code"] == "conflict"
        assert error["details"]["reason"] == "idempotency_key_reused"
    assert attempt().json_body["node_id"] == first.json_body["node_id"]


def test_heartbeat_needs_that_nodes_credential(cp_api: Any, cp_stack: Any) -> None:
    a = register(cp_api, cp_stack)
    b = register(cp_api, cp_stack)
    ok = send_heartbeat(cp_api, a["node_id"], a["credential"])
    assert ok.status_code == 200, ok.body
    assert ok.json_body["status"] == "active"
    assert ok.json_body["work"] == [] and "k1" in ok.json_body["share_public_keys"]
    stolen = send_heartbeat(cp_api, a["node_id"], b["credential"])
    assert stolen.status_code == 401
    assert error_of(stolen)["code"] == "unauthorized"
    missing = cp_api.call("POST", f"/nodes/{a['node_id']}/heartbeat", {"used_bytes": 1}, key=False)
    assert missing.status_code == 401


def test_list_nodes_needs_the_api_key_and_hides_credentials(cp_api: Any, cp_stack: Any) -> None:
    node = register(cp_api, cp_stack)
    assert cp_api.call("GET", "/nodes", key=False).status_code == 401
    answer = cp_api.call("GET", "/nodes")
    assert answer.status_code == 200
    listed = {n["node_id"]: n for n in answer.json_body["nodes"]}
    assert listed[node["node_id"]]["endpoint"] == SERVED[node["node_id"]].url
    assert "credential_sha256" not in listed[node["node_id"]]


def test_path_tricks_in_ids_are_rejected(cp_api: Any, cp_stack: Any) -> None:
    node = register(cp_api, cp_stack)
    auth = {"authorization": f"Bearer {node['credential']}"}
    for bad in ("..%2F..%2Fetc", "ABCDEF", "x" * 32, "0" * 31):
        answer = cp_api.call(
            "POST",
            f"/nodes/{node['node_id']}/work/{bad}",
            {"ok": True},
            key=False,
            headers=auth,
        )
        assert answer.status_code == 400, (bad, answer.body)
        assert error_of(answer)["code"] == "invalid_input"


def test_bad_bodies_get_json_errors(cp_api: Any, cp_stack: Any) -> None:
    bad_json = cp_api.call("POST", "/nodes/register", b"{not json", key=False)
    assert bad_json.status_code == 400 and error_of(bad_json)["code"] == "invalid_input"
    not_object = cp_api.call("POST", "/nodes/register", b"[1, 2]", key=False)
    assert not_object.status_code == 400
    # POST /files takes up to 4 MiB (a large file's declared hashes); others 1 MiB.
    huge = cp_api.call("POST", "/files", b'{"name": "' + b"x" * (5 * 1024 * 1024) + b'"}')
    assert huge.status_code == 413 and error_of(huge)["code"] == "payload_too_large"
    big = b'{"join_token": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    huge_register = cp_api.call("POST", "/nodes/register", big, key=False)
    assert huge_register.status_code == 413
    assert error_of(huge_register)["code"] == "payload_too_large"
    wrong_type = cp_api.call(
        "POST", "/files", b"name=x", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert wrong_type.status_code == 415
    assert error_of(wrong_type)["code"] == "unsupported_media_type"
