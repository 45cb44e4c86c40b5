"""Grants proven by running: each component of the local stack signs as its own role,
built from infra/grants.json, and moto refuses what that role does not grant.

The rest of the suite runs every flow (register, upload, share, replicate, collect)
under these roles; these tests show the refusals are real.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fsnode_core.errors import Unavailable
from fsnode_core.published import Head
from fsnode_core.published_keys import head_key, version_manifest_key

from edge_node.aws_identity import signed_caller_identity
from fsnode.localstack import processes
from fsnode.localstack.iam_enforcement import ACCOUNT
from fsnode.localstack.resources import LOCAL_CREDENTIALS
from fsnode.localstack.stack import StackInfo
from tests.helpers import a_head, finished_execution


def _env(stack: StackInfo, name: str) -> dict[str, str]:
    spec = json.loads((Path(stack.state_dir) / "launch" / f"{name}.json").read_text())
    return dict(spec["env"])


def _as(stack: StackInfo, service: str, env: dict[str, str]) -> Any:
    # The service is named at run time (the stubs type only literal names).
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=stack.aws_endpoint,
        region_name=stack.region,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env["AWS_SESSION_TOKEN"],
    )


def _root(stack: StackInfo, service: str) -> Any:
    # The service is named at run time (the stubs type only literal names).
    return boto3.client(  # type: ignore[call-overload]
        service, endpoint_url=stack.aws_endpoint, region_name=stack.region, **LOCAL_CREDENTIALS
    )


def _refused(call: Any, code: str = "AccessDeniedException") -> None:
    with pytest.raises(ClientError) as refused:
        call()
    assert refused.value.response["Error"]["Code"] == code, refused.value.response


def _function_env(stack: StackInfo, name: str) -> dict[str, str]:
    roles = json.loads(_env(stack, "api")["FSNODE_LOCAL_FUNCTION_CREDENTIALS"])
    return {
        "AWS_ACCESS_KEY_ID": roles[name]["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": roles[name]["secret_access_key"],
        "AWS_SESSION_TOKEN": roles[name]["session_token"],
    }


def _role_env(stack: StackInfo, role: str) -> dict[str, str]:
    """Credentials of ``role`` (functions that run inside the moto server, invoked as
    Lambdas, sign as their roles: these are the same)."""
    keys = _root(stack, "sts").assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName="grants"
    )["Credentials"]
    env = {
        "AWS_ACCESS_KEY_ID": keys["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": keys["SecretAccessKey"],
        "AWS_SESSION_TOKEN": keys["SessionToken"],
    }
    assert f"assumed-role/{role}/" in _as(stack, "sts", env).get_caller_identity()["Arn"]
    return env


def _log_has(stack: StackInfo, text: str) -> bool:
    return text in (Path(stack.state_dir) / "logs" / "aws.log").read_text(errors="replace")


@contextmanager
def _without(stack: StackInfo, role: str, action: str) -> Iterator[None]:
    """``role`` loses ``action`` for the duration (its policy is put back after)."""
    iam = _root(stack, "iam")
    original = iam.get_role_policy(RoleName=role, PolicyName="grants")["PolicyDocument"]
    document = original if isinstance(original, dict) else json.loads(original)
    kept = [
        {**statement, "Action": [a for a in statement["Action"] if a != action]}
        for statement in document["Statement"]
    ]
    kept = [statement for statement in kept if statement["Action"]]
    if kept:
        iam.put_role_policy(
            RoleName=role,
            PolicyName="grants",
            PolicyDocument=json.dumps({**document, "Statement": kept}),
        )
    else:
        iam.delete_role_policy(RoleName=role, PolicyName="grants")
    try:
        yield
    finally:
        iam.put_role_policy(RoleName=role, PolicyName="grants", PolicyDocument=json.dumps(document))


def test_every_process_signs_as_its_own_role(stack: StackInfo) -> None:
    def role_of(env: dict[str, str]) -> str:
        arn = _as(stack, "sts", env).get_caller_identity()["Arn"]
        return str(arn.split("assumed-role/")[1].split("/")[0])

    assert role_of(_env(stack, "api")) == "fsnode-api-handler"
    assert role_of(_function_env(stack, "api_key_authorizer")) == "fsnode-api-key-authorizer"
    assert role_of(_function_env(stack, "prune")) == "fsnode-prune"
    assert {role_of(_env(stack, f"edge-{i + 1}")) for i in range(len(stack.edges))} == {
        "fsnode-edge"
    }


def test_the_api_handler_cannot_issue_delete_or_complete_tasks(stack: StackInfo) -> None:
    env = _env(stack, "api")
    bucket, key = env["FSNODE_BUCKET"], f"grants/{os.urandom(4).hex()}"
    s3 = _as(stack, "s3", env)
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")  # granted: uploads are PutObject
    _refused(lambda: s3.delete_object(Bucket=bucket, Key=key), "AccessDenied")
    pca = _as(stack, "acm-pca", env)
    _refused(
        lambda: pca.issue_certificate(
            CertificateAuthorityArn=env["FSNODE_CA_ARN"],
            Csr=_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048)).encode(),
            SigningAlgorithm="SHA256WITHRSA",
            Validity={"Value": 1, "Type": "DAYS"},
        )
    )
    _refused(
        lambda: _as(stack, "stepfunctions", env).send_task_success(taskToken="t" * 10, output="{}")
    )
    # The keys table is the authorizer's to read; the handler only writes it.
    _refused(
        lambda: _as(stack, "dynamodb", env).get_item(
            TableName=env["FSNODE_API_KEYS_TABLE"], Key={"key_id": {"S": "0" * 32}}
        )
    )
    _root(stack, "s3").delete_object(Bucket=bucket, Key=key)


def test_an_edge_reads_objects_and_nothing_else(stack: StackInfo) -> None:
    env, api = _env(stack, "edge-1"), _env(stack, "api")
    bucket, key = api["FSNODE_BUCKET"], f"grants/{os.urandom(4).hex()}"
    _root(stack, "s3").put_object(Bucket=bucket, Key=key, Body=b"edge reads")
    s3 = _as(stack, "s3", env)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"edge reads"
    _refused(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x"), "AccessDenied")
    _refused(lambda: _as(stack, "dynamodb", env).scan(TableName=api["FSNODE_NODES_TABLE"]))
    _refused(
        lambda: _as(stack, "secretsmanager", env).get_secret_value(
            SecretId=api["FSNODE_SIGNING_KEY_SECRET"]
        )
    )
    _root(stack, "s3").delete_object(Bucket=bucket, Key=key)


def test_an_in_process_function_runs_as_its_role(stack: StackInfo) -> None:
    """issue_certificate runs inside moto's process, as its own role: without the grant,
    register fails where the CA is called."""
    edge = _env(stack, "edge-1")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body: dict[str, Any] = {
        "join_token": edge["FSNODE_JOIN_TOKEN"],
        "endpoint": f"https://127.0.0.1:{processes.free_port()}",
        "region": "local",
        "capacity_bytes": 1,
        "csr": _csr(key),
        "aws_identity": signed_caller_identity(
            key.public_key(),
            boto3.session.Session(
                aws_access_key_id=edge["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=edge["AWS_SECRET_ACCESS_KEY"],
                aws_session_token=edge["AWS_SESSION_TOKEN"],
                region_name=stack.region,
            ),
            stack.aws_endpoint,
        ),
    }
    with _without(stack, "fsnode-issue-certificate", "acm-pca:IssueCertificate"):
        answer = requests.post(f"{stack.api}/nodes/register", json=body, timeout=60)
    assert answer.status_code == 503, answer.text
    assert _log_has(stack, "assumed-role/fsnode-issue-certificate/")
    assert _log_has(stack, "action=acm-pca:IssueCertificate")


def test_step_functions_invokes_as_the_state_machine_role(stack: StackInfo) -> None:
    api = _env(stack, "api")
    sfn = _root(stack, "stepfunctions")
    with _without(stack, "fsnode-states", "lambda:InvokeFunction"):
        arn = sfn.start_execution(
            stateMachineArn=api["FSNODE_REPLICATE_STATE_MACHINE_ARN"],
            name=f"grants-{os.urandom(4).hex()}",
            input=json.dumps({"file_id": "0" * 32, "version": "0" * 32}),
        )["executionArn"]
        status = finished_execution(sfn, arn)["status"]
    assert status == "FAILED"
    assert _log_has(stack, "assumed-role/fsnode-states/")


def _csr(key: rsa.RSAPrivateKey) -> str:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


def test_a_multi_object_delete_is_authorized_per_key(stack: StackInfo) -> None:
    """DeleteObjects is s3:DeleteObject on each key named, as S3 authorizes it: the
    publisher may tidy tree keys under meta/v1/ and nothing else in the same call."""
    bucket = _env(stack, "api")["FSNODE_BUCKET"]
    env = _role_env(stack, "fsnode-publish-file")
    tag = os.urandom(4).hex()
    inside = [f"meta/v1/tree/grants-{tag}/{n}!1.a.b" for n in range(2)]
    outside = f"grants/{tag}"
    root = _root(stack, "s3")
    for key in [*inside, outside]:
        root.put_object(Bucket=bucket, Key=key, Body=b"")
    s3 = _as(stack, "s3", env)

    def delete(keys: list[str]) -> Any:
        return s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
        )

    _refused(lambda: delete([inside[1], outside]), "AccessDenied")
    assert root.head_object(Bucket=bucket, Key=outside)
    assert root.head_object(Bucket=bucket, Key=inside[1])  # nothing of a refused call
    assert not delete(inside).get("Errors")
    listed = root.list_objects_v2(Bucket=bucket, Prefix=f"meta/v1/tree/grants-{tag}/")
    assert listed["KeyCount"] == 0
    root.delete_object(Bucket=bucket, Key=outside)


def _heads() -> Any:
    """``chalicelib.heads``, the publishers' conditional head write (functions/ is not
    a package of this repository's install)."""
    functions = str(Path(__file__).resolve().parents[2] / "functions")
    if functions not in sys.path:
        sys.path.insert(0, functions)
    return importlib.import_module("chalicelib.heads")


@pytest.mark.parametrize("role", ["fsnode-publish-file", "fsnode-prune", "fsnode-api-handler"])
def test_every_publisher_reads_a_head_before_replacing_it(stack: StackInfo, role: str) -> None:
    """A head is replaced only by a newer state (a conditional PUT after a GET): each role
    that publishes may read heads, and no other published object it does not need."""
    heads = _heads()
    bucket = _env(stack, "api")["FSNODE_BUCKET"]
    s3 = _as(stack, "s3", _role_env(stack, role))
    file_id = os.urandom(16).hex()
    assert heads.put_head(s3, bucket, a_head(file_id, 2)) is True  # created
    assert heads.put_head(s3, bucket, a_head(file_id, 1)) is False  # older: not written
    assert heads.put_head(s3, bucket, a_head(file_id, 3)) is True  # newer: replaced
    read = _root(stack, "s3").get_object(Bucket=bucket, Key=head_key(file_id))["Body"].read()
    assert Head.from_json(read).seq == 3
    if role != "fsnode-api-handler":  # the handler writes manifests too, and reads them
        _refused(
            lambda: s3.get_object(Bucket=bucket, Key=version_manifest_key(file_id, "0" * 32)),
            "AccessDenied",
        )


def test_a_publisher_that_may_not_read_heads_creates_but_never_overwrites(
    stack: StackInfo,
) -> None:
    """Without s3:GetObject, S3 answers a head's GET 403 whether or not it exists: the
    head is created only if absent, and an existing one is left as it is."""
    heads = _heads()
    bucket = _env(stack, "api")["FSNODE_BUCKET"]
    s3 = _as(stack, "s3", _role_env(stack, "fsnode-publish-file"))
    file_id = os.urandom(16).hex()
    with _without(stack, "fsnode-publish-file", "s3:GetObject"):
        _refused(lambda: s3.get_object(Bucket=bucket, Key=head_key(file_id)), "AccessDenied")
        assert heads.put_head(s3, bucket, a_head(file_id, 1)) is True
        with pytest.raises(Unavailable):
            heads.put_head(s3, bucket, a_head(file_id, 2))
    read = _root(stack, "s3").get_object(Bucket=bucket, Key=head_key(file_id))["Body"].read()
    assert Head.from_json(read).seq == 1
