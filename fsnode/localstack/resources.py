"""Create the stack's AWS resources in the moto server, from the same definitions CDK uses.

Tables come from ``fsnode_core/tables.json``; state machines from the ASL files in
``functions/statemachines``, with their ``${XxxFunctionArn}`` placeholders pointing at
Lambda functions whose handlers are the Chalice app's ``@app.lambda_function``s.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import secrets
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config
from fsnode_core.tables import create_table_kwargs, table_layouts

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)FunctionArn\}")
_ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"
_PREFIX = "fsnode"
# moto accepts any credentials; these never leave the machine.
LOCAL_CREDENTIALS = {"aws_access_key_id": "fsnode-local", "aws_secret_access_key": "fsnode-local"}


@dataclass(frozen=True, slots=True)
class StackResources:
    """What the control plane and the edges need to know about the created resources."""

    bucket: str
    tables: dict[str, str]
    ca_arn: str
    ca_cert_pem: str
    join_token: str
    api_key: str
    secrets: dict[str, str]
    state_machines: dict[str, str]


def snake_case(camel: str) -> str:
    """``PlanReplication`` into ``plan_replication`` (the naming rule in PROTOCOL.md)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def lambda_names(asl_text: str) -> list[str]:
    """The Chalice lambda-function names an ASL document's placeholders refer to."""
    return sorted({snake_case(m) for m in _PLACEHOLDER.findall(asl_text)})


class ResourceBuilder:
    """Creates every resource of one local stack against one moto endpoint."""

    def __init__(self, endpoint: str, region: str, functions_dir: Path) -> None:
        self._endpoint = endpoint
        self._region = region
        self._functions_dir = functions_dir
        self._config = Config(retries={"max_attempts": 3, "mode": "standard"})

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self._endpoint,
            region_name=self._region,
            config=self._config,
            **LOCAL_CREDENTIALS,
        )

    def build(self, control_plane_env: dict[str, str]) -> StackResources:
        self._enable_state_machine_execution()
        bucket = f"{_PREFIX}-origin"
        s3 = self.client("s3")
        s3.create_bucket(Bucket=bucket)
        # Browsers upload parts straight to S3 and must read each part's ETag.
        s3.put_bucket_cors(
            Bucket=bucket,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedOrigins": ["*"],
                        "AllowedMethods": ["GET", "PUT", "HEAD"],
                        "AllowedHeaders": ["*"],
                        "ExposeHeaders": ["ETag"],
                        "MaxAgeSeconds": 3600,
                    }
                ]
            },
        )
        tables = self._create_tables()
        ca_arn, ca_cert = self._create_ca()
        join_token = secrets.token_urlsafe(32)
        api_key = secrets.token_urlsafe(32)
        keyring = json.dumps({"active": "k1", "k1": secrets.token_urlsafe(48)})
        secret_arns = {
            "join_token": self._secret(f"{_PREFIX}/join-token", join_token),
            "signing_keys": self._secret(f"{_PREFIX}/share-signing-keys", keyring),
            "admin_key": self._secret(f"{_PREFIX}/admin-api-key", api_key),
        }
        resources = StackResources(
            bucket=bucket,
            tables=tables,
            ca_arn=ca_arn,
            ca_cert_pem=ca_cert,
            join_token=join_token,
            api_key=api_key,
            secrets=secret_arns,
            state_machines={},
        )
        env = {**control_plane_env, **control_plane_settings(resources)}
        machines = self._create_state_machines(env)
        return dataclasses.replace(resources, state_machines=machines)

    def _enable_state_machine_execution(self) -> None:
        # Off by default in moto; on, Step Functions runs the ASL for real.
        response = requests.post(
            f"{self._endpoint}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}},
            timeout=10,
        )
        response.raise_for_status()

    def _create_tables(self) -> dict[str, str]:
        ddb = self.client("dynamodb")
        names: dict[str, str] = {}
        for logical, layout in table_layouts().items():
            name = f"{_PREFIX}-{logical}"
            ddb.create_table(**create_table_kwargs(logical, name))
            if layout.get("ttl_attribute"):
                ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={
                        "Enabled": True, "AttributeName": layout["ttl_attribute"]},
                )
            names[logical] = name
        return names

    def _create_ca(self) -> tuple[str, str]:
        pca = self.client("acm-pca")
        arn = pca.create_certificate_authority(
            CertificateAuthorityConfiguration={
                "KeyAlgorithm": "RSA_2048",
                "SigningAlgorithm": "SHA256WITHRSA",
                "Subject": {"CommonName": "fsnode local root CA", "Organization": "fsnode"},
            },
            CertificateAuthorityType="ROOT",
        )["CertificateAuthorityArn"]
        csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
        cert_arn = pca.issue_certificate(
            CertificateAuthorityArn=arn,
            Csr=csr.encode(),
            SigningAlgorithm="SHA256WITHRSA",
            TemplateArn=_ROOT_TEMPLATE,
            Validity={"Value": 10, "Type": "YEARS"},
        )["CertificateArn"]
        cert = _wait_for_certificate(pca, arn, cert_arn)
        pca.import_certificate_authority_certificate(
            CertificateAuthorityArn=arn, Certificate=cert.encode()
        )
        status = pca.describe_certificate_authority(CertificateAuthorityArn=arn)
        if status["CertificateAuthority"]["Status"] != "ACTIVE":
            raise RuntimeError(f"private CA is {status['CertificateAuthority']['Status']}")
        return arn, cert

    def _secret(self, name: str, value: str) -> str:
        return str(
            self.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        )

    def _create_state_machines(self, env: dict[str, str]) -> dict[str, str]:
        role = self._role()
        lam = self.client("lambda")
        sfn = self.client("stepfunctions")
        machines: dict[str, str] = {}
        created: dict[str, str] = {}
        for asl in sorted((self._functions_dir / "statemachines").glob("*.asl.json")):
            text = asl.read_text()
            for name in lambda_names(text):
                if name not in created:
                    created[name] = lam.create_function(
                        FunctionName=f"{_PREFIX}-{name}",
                        Runtime="python3.11",
                        Role=role,
                        Handler=f"app.{name}",
                        Code={"ZipFile": _code_zip()},
                        Timeout=60,
                        Environment={"Variables": env},
                    )["FunctionArn"]
            definition = _PLACEHOLDER.sub(lambda m: created[snake_case(m.group(1))], text)
            machine = asl.name.removesuffix(".asl.json")
            machines[machine] = sfn.create_state_machine(
                name=f"{_PREFIX}-{machine}", definition=definition, roleArn=role
            )["stateMachineArn"]
        # The handlers start executions too, so they learn the machines' ARNs.
        for name in created:
            lam.update_function_configuration(
                FunctionName=f"{_PREFIX}-{name}",
                Environment={"Variables": {**env, **state_machine_settings(machines)}},
            )
        return machines

    def _role(self) -> str:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        return str(
            self.client("iam").create_role(
                RoleName=f"{_PREFIX}-local", AssumeRolePolicyDocument=json.dumps(trust)
            )["Role"]["Arn"]
        )


def control_plane_settings(resources: StackResources) -> dict[str, str]:
    """The control plane's environment for these resources (names per PROTOCOL.md)."""
    return {
        "FSNODE_NODES_TABLE": resources.tables["nodes"],
        "FSNODE_CHUNKS_TABLE": resources.tables["chunks"],
        "FSNODE_IDEMPOTENCY_TABLE": resources.tables["idempotency"],
        "FSNODE_BUCKET": resources.bucket,
        "FSNODE_CA_ARN": resources.ca_arn,
        "FSNODE_JOIN_TOKEN_SECRET": resources.secrets["join_token"],
        "FSNODE_SIGNING_KEY_SECRET": resources.secrets["signing_keys"],
        "FSNODE_ADMIN_KEY_SECRET": resources.secrets["admin_key"],
        "FSNODE_API_KEYS_TABLE": resources.tables["api_keys"],
        **state_machine_settings(resources.state_machines),
    }


def state_machine_settings(machines: dict[str, str]) -> dict[str, str]:
    return {
        f"FSNODE_{name.upper()}_STATE_MACHINE_ARN": arn for name, arn in sorted(machines.items())
    }


def _wait_for_certificate(pca: Any, ca_arn: str, cert_arn: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            return str(
                pca.get_certificate(CertificateAuthorityArn=ca_arn, CertificateArn=cert_arn)[
                    "Certificate"
                ]
            )
        except pca.exceptions.RequestInProgressException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _code_zip() -> bytes:
    # moto stores the code but never runs it: invocations go to the handler in-process.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "fsnode local stack: handlers run in-process\n")
    return buffer.getvalue()
