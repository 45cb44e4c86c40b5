"""The edge's presigned S3 URLs are the ones a boto3 client would sign (same path,
query and credential scope; only the moment of signing differs), without building
a client."""

from __future__ import annotations

import re

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import NoCredentialsError, NoRegionError

from edge_node.s3_presign import S3Presigner

CASES = [
    ("get_object", {"Bucket": "my-bucket", "Key": "a b/c+d~e!*'().json"}),
    ("get_object", {"Bucket": "my-bucket", "Key": "f/x", "VersionId": "v1/+="}),
    ("get_object", {"Bucket": "my.dotted.bucket", "Key": "k"}),
    ("list_objects_v2", {"Bucket": "my-bucket", "Prefix": "t/x y/é"}),
    ("list_objects_v2", {"Bucket": "my-bucket", "Prefix": "t/", "ContinuationToken": "a/+=~"}),
]


def _comparable(url: str) -> str:
    # boto3 presigns against S3's global host name; the edge names the region's.
    url = url.replace(".s3.amazonaws.com", ".s3.eu-west-1.amazonaws.com")
    url = url.replace("//s3.amazonaws.com", "//s3.eu-west-1.amazonaws.com")
    return re.sub(r"X-Amz-(Date|Signature)=[^&]*", "", url)


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token/+=")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)


@pytest.mark.parametrize("endpoint", [None, "http://127.0.0.1:5000"])
@pytest.mark.parametrize(("operation", "params"), CASES)
def test_urls_match_boto3(
    credentials: None,
    monkeypatch: pytest.MonkeyPatch,
    endpoint: str | None,
    operation: str,
    params: dict[str, str],
) -> None:
    if endpoint is None:
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    client = boto3.session.Session().client("s3", config=Config(signature_version="s3v4"))
    theirs = client.generate_presigned_url(operation, Params=dict(params), ExpiresIn=900)
    ours = S3Presigner().url(operation, dict(params), 900)
    assert _comparable(ours) == _comparable(theirs)
    assert "X-Amz-Security-Token=token%2F%2B%3D" in ours


def test_an_explicit_endpoint_wins_over_the_environment(
    credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    url = S3Presigner("http://127.0.0.1:6000/").url("get_object", {"Bucket": "b", "Key": "k"}, 60)
    assert url.startswith("http://127.0.0.1:6000/b/k?")


def test_unknown_operations_and_arguments_are_refused(credentials: None) -> None:
    signer = S3Presigner()
    with pytest.raises(ValueError, match="cannot presign put_object"):
        signer.url("put_object", {"Bucket": "b", "Key": "k"}, 60)
    with pytest.raises(ValueError, match="Range"):
        signer.url("get_object", {"Bucket": "b", "Key": "k", "Range": "bytes=0-1"}, 60)
    with pytest.raises(ValueError, match="cannot presign get_object"):
        signer.url("get_object", {"Bucket": "b"}, 60)
    with pytest.raises(ValueError, match="cannot presign list_objects_v2"):
        signer.url("list_objects_v2", {"Bucket": "b", "Key": "k"}, 60)


def test_without_credentials_or_region_nothing_is_signed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with pytest.raises(NoCredentialsError):
        S3Presigner().url("get_object", {"Bucket": "b", "Key": "k"}, 60)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(NoRegionError):
        S3Presigner().url("get_object", {"Bucket": "b", "Key": "k"}, 60)
