"""Registration attested by AWS (issue 17.1): with an edge role set, a registration
carries a GetCallerIdentity request signed as that role and bound to the CSR's key;
the control plane has STS (moto's here) say who signed it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fsnode_core.nodes_store import NodeRegistry

from edge_node.aws_identity import signed_caller_identity
from tests.integration.control_plane_helpers import error_of, ip_san, make_csr, register_body
from tests.integration.served_endpoints import ServedEndpoint

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def _role_session(name: str) -> boto3.session.Session:
    """A session with the assumed credentials of a (new) role ``name``."""
    iam = boto3.client("iam")
    try:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    answer = boto3.client("sts").assume_role(RoleArn=arn, RoleSessionName="edge-test")
    credentials = answer["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name="us-east-1",
    )


@pytest.fixture()
def edge_role(cp_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    from chalicelib.settings import get_settings

    arn = (
        boto3.client("iam").create_role(
            RoleName="fsnode-test-edge-attest",
            AssumeRolePolicyDocument=TRUST,
        )["Role"]["Arn"]
        if not _exists("fsnode-test-edge-attest")
        else boto3.client("iam").get_role(RoleName="fsnode-test-edge-attest")["Role"]["Arn"]
    )
    monkeypatch.setenv("FSNODE_EDGE_ROLE_ARN", arn)
    get_settings.cache_clear()
    yield _role_session("fsnode-test-edge-attest")
    get_settings.cache_clear()


def _exists(role: str) -> bool:
    try:
        boto3.client("iam").get_role(RoleName=role)
    except boto3.client("iam").exceptions.NoSuchEntityException:
        return False
    return True


def _register(api: Any, stack: Any, identity: Any, key: Any = KEY) -> tuple[Any, str]:
    served = ServedEndpoint()
    body = register_body(stack, make_csr([ip_san("127.0.0.1")], key=key), served.url)
    if identity is not None:
        body["aws_identity"] = identity
    served.close()
    return api.call("POST", "/nodes/register", body, key=False), served.url


def test_a_registration_signed_as_the_edge_role_is_accepted(
    cp_api: Any, cp_stack: Any, edge_role: boto3.session.Session
) -> None:
    answer, _ = _register(cp_api, cp_stack, signed_caller_identity(KEY.public_key(), edge_role))
    assert answer.status_code == 200, answer.body
    node = NodeRegistry(cp_stack.env["FSNODE_NODES_TABLE"]).get(answer.json_body["node_id"])
    assert node is not None and node.status == "pending"
    assert node.identity_arn is not None
    assert ":assumed-role/fsnode-test-edge-attest/edge-test" in node.identity_arn


def test_a_registration_without_an_aws_identity_is_refused(
    cp_api: Any, cp_stack: Any, edge_role: boto3.session.Session
) -> None:
    answer, _ = _register(cp_api, cp_stack, None)
    assert answer.status_code == 401, answer.body
    assert error_of(answer)["details"]["field"] == "aws_identity"


def test_another_roles_identity_is_refused(
    cp_api: Any, cp_stack: Any, edge_role: boto3.session.Session
) -> None:
    intruder = _role_session("fsnode-test-not-the-edge")
    answer, _ = _register(cp_api, cp_stack, signed_caller_identity(KEY.public_key(), intruder))
    assert answer.status_code == 403, answer.body
    assert error_of(answer)["message"] == "this AWS identity is not the edge role"


def test_an_identity_bound_to_another_key_is_refused(
    cp_api: Any, cp_stack: Any, edge_role: boto3.session.Session
) -> None:
    """A captured attestation is good for its own key only."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    answer, _ = _register(cp_api, cp_stack, signed_caller_identity(other.public_key(), edge_role))
    assert answer.status_code == 400, answer.body
    assert "SHA-256 of the CSR's public key" in error_of(answer)["message"]


@pytest.mark.parametrize(
    "change",
    [
        {"url": "http://169.254.169.254/latest/"},
        {"url": "https://sts.amazonaws.com.evil.test/"},
        {"method": "GET"},
        {"body": "Action=GetCallerIdentity&Version=2011-06-15&Extra=1"},
        {"headers": "not a mapping"},
    ],
    ids=["metadata-url", "lookalike-host", "get", "other-body", "headers-not-object"],
)
def test_a_malformed_identity_is_refused_and_never_sent_elsewhere(
    cp_api: Any, cp_stack: Any, edge_role: boto3.session.Session, change: dict[str, Any]
) -> None:
    identity = {**signed_caller_identity(KEY.public_key(), edge_role), **change}  # type: ignore[dict-item]
    answer, _ = _register(cp_api, cp_stack, identity)
    assert answer.status_code == 400, answer.body
    assert error_of(answer)["details"]["field"] == "aws_identity"


def test_the_binding_header_must_be_signed(
    cp_api: Any, cp_stack: Any, edge_role: boto3.session.Session
) -> None:
    identity = signed_caller_identity(KEY.public_key(), edge_role)
    assert identity is not None
    auth = identity["headers"]["Authorization"]
    identity["headers"]["Authorization"] = auth.replace(";x-fsnode-node-key", "")
    answer, _ = _register(cp_api, cp_stack, identity)
    assert answer.status_code == 400, answer.body
    assert "must cover X-Fsnode-Node-Key" in error_of(answer)["message"]
