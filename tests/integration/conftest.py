"""Control-plane integration fixtures: a real moto server and the Chalice app in-process.

boto3 talks to the moto SERVER over HTTP (``AWS_ENDPOINT_URL``), never moto decorators.
The server, tables, bucket, secrets and a ROOT ACM PCA are created once per session.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from fsnode_core.tables import create_table_kwargs

from fsnode.localstack.resources import make_root_ca

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
APP_MODULE = "fsnode_functions_app"  # the local stack loads functions/app.py under this name


@dataclass(frozen=True)
class Stack:
    """What the session created in moto."""

    endpoint: str
    env: dict[str, str]  # the control plane's FSNODE_* settings
    aws_env: dict[str, str]  # AWS_* pointing at the moto server
    join_token: str
    api_key: str
    keyring: str
    ca_arn: str
    root_pem: str


def _load_app() -> ModuleType:
    module = sys.modules.get(APP_MODULE)
    if module is not None:
        return module
    if str(FUNCTIONS) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS))
    spec = importlib.util.spec_from_file_location(APP_MODULE, FUNCTIONS / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[APP_MODULE] = module
    spec.loader.exec_module(module)
    return module


def _invoked_functions(aws: Any, env: dict[str, str]) -> dict[str, str]:
    """The functions the API handler invokes (issue_certificate, report_work) as moto
    Lambdas run in this process; the settings that name them."""
    from fsnode.localstack import grants, lambda_dispatch

    lambda_dispatch.install(FUNCTIONS)
    role = aws("iam").create_role(
        RoleName="fsnode-test-functions",
        AssumeRolePolicyDocument=json.dumps(grants.trust_policy("function")),
    )["Role"]["Arn"]
    names = {
        grants.function_setting(name): f"fsnode-test-{name}"
        for name in grants.invoked_by_api_handler()
    }
    for name in grants.invoked_by_api_handler():
        aws("lambda").create_function(
            FunctionName=f"fsnode-test-{name}",
            Runtime="python3.11",
            Role=role,
            Handler=f"app.{name}",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
            Environment={"Variables": {**env, **names}},
        )
    return names


@pytest.fixture(scope="session")
def cp_stack() -> Iterator[Stack]:
    """A moto server with the control plane's resources, and the environment pointing at it."""
    from moto.server import ThreadedMotoServer

    from fsnode.localstack import pca_rules, s3_checksums, s3_conditional_writes

    s3_checksums.install()  # part checksums as S3 checks them, as the local stack's server does
    s3_conditional_writes.install()  # a conditional write holds against a racing writer
    pca_rules.install()  # the CA signs only with its own key type's algorithms
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    aws_env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # moto's Step Functions interpreter calls Lambda on this port.
        "MOTO_PORT": str(port),
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )

    def aws(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]

    try:
        ddb = aws("dynamodb")
        tables = {
            name: f"fsnode-test-{name}" for name in ("nodes", "chunks", "idempotency", "api_keys")
        }
        for logical, table in tables.items():
            ddb.create_table(**create_table_kwargs(logical, table))
        bucket = "fsnode-test-origin"
        aws("s3").create_bucket(Bucket=bucket)
        sm = aws("secretsmanager")
        join_token = secrets.token_urlsafe(32)
        api_key = secrets.token_urlsafe(32)
        keyring = json.dumps({"active": "k1", "k1": secrets.token_urlsafe(48)})
        arns = {
            name: sm.create_secret(Name=f"fsnode-test/{name}", SecretString=value)["ARN"]
            for name, value in (("join", join_token), ("api", api_key), ("keys", keyring))
        }
        ca_arn, root = make_root_ca(aws("acm-pca"), "fsnode test root")
        env = {
            "FSNODE_NODES_TABLE": tables["nodes"],
            "FSNODE_CHUNKS_TABLE": tables["chunks"],
            "FSNODE_IDEMPOTENCY_TABLE": tables["idempotency"],
            "FSNODE_BUCKET": bucket,
            "FSNODE_CA_ARN": ca_arn,
            "FSNODE_JOIN_TOKEN_SECRET": arns["join"],
            "FSNODE_SIGNING_KEY_SECRET": arns["keys"],
            "FSNODE_ADMIN_KEY_SECRET": arns["api"],
            "FSNODE_API_KEYS_TABLE": tables["api_keys"],
            "FSNODE_CHUNK_SIZE": str(1024 * 1024),
            "FSNODE_CERT_VALIDITY_DAYS": "7",
            "FSNODE_HEARTBEAT_INTERVAL": "5",
            "FSNODE_HEARTBEAT_TIMEOUT": "30",
            "FSNODE_REPLICATION_FACTOR": "2",
            "FSNODE_PUBLIC_URL": "http://control.test",
            # Nodes register at loopback addresses, one test at a DNS name.
            "FSNODE_NODE_NAMESPACE": "127.0.0.0/8,.example.net",
            # Collected at once: tests of the grace period set their own.
            "FSNODE_RETIRE_GRACE_SECONDS": "0",
        }
        env.update(_invoked_functions(aws, env))
        yield Stack(
            endpoint=endpoint,
            env=env,
            aws_env=aws_env,
            join_token=join_token,
            api_key=api_key,
            keyring=keyring,
            ca_arn=ca_arn,
            root_pem=root,
        )
    finally:
        server.stop()


@pytest.fixture()
def cp_env(cp_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The stack's environment, set for one test only (other suites see theirs untouched)."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in {**cp_stack.aws_env, **cp_stack.env}.items():
        monkeypatch.setenv(name, value)
    return cp_stack


@pytest.fixture(scope="session")
def cp_app(cp_stack: Stack) -> ModuleType:
    """``functions/app.py``, loaded the way the local stack loads it, behind what API
    Gateway does (greedy routes, limits, gateway responses; no authorizer cache, so a
    revoked key is refused at once here)."""
    from fsnode.localstack import api_gateway, greedy_routes

    greedy_routes.install()
    api_gateway.install(cache_authorizers=False)
    return _load_app()


@pytest.fixture()
def cp_client(cp_app: ModuleType, cp_env: Stack) -> Iterator[Any]:
    """A Chalice test client over the app, with fresh settings and clients."""
    from chalice.test import Client
    from chalicelib import aws

    aws.reset()
    with Client(cp_app.app) as test_client:
        yield test_client
    aws.reset()


class Api:
    """JSON calls to the app through the Chalice test client."""

    def __init__(self, client: Any, api_key: str) -> None:
        self.client = client
        self.api_key = api_key

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Any:
        sent = {"content-type": "application/json", **(headers or {})}
        if key:
            sent["authorization"] = f"Bearer {self.api_key}"
        raw = (
            b""
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        return self.client.http.request(method, path, headers=sent, body=raw)


@pytest.fixture()
def cp_api(cp_client: Any, cp_stack: Stack) -> Api:
    """JSON helper over the test client."""
    return Api(cp_client, cp_stack.api_key)
