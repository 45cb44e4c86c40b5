"""The registration's signed GetCallerIdentity goes to the STS endpoint a boto3 STS
client would call, without building one."""

from __future__ import annotations

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from edge_node.aws_identity import signed_caller_identity

KEY = ec.generate_private_key(ec.SECP256R1()).public_key()


@pytest.mark.parametrize(
    "env",
    [
        {"AWS_DEFAULT_REGION": "eu-west-1"},
        {"AWS_DEFAULT_REGION": "cn-north-1"},
        {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"},
        {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:7/"},
    ],
)
def test_the_url_is_the_one_boto3_would_call(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = boto3.session.Session()
    signed = signed_caller_identity(KEY, session)
    assert signed is not None
    expected = str(session.client("sts").meta.endpoint_url).rstrip("/") + "/"
    assert signed["url"] == expected
    region = env["AWS_DEFAULT_REGION"]
    assert f"/{region}/sts/aws4_request" in signed["headers"]["Authorization"]
