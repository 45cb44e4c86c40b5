"""Create the stack's AWS resources in the moto server, from the same definitions CDK uses.

Tables come from ``fsnode_core/tables.json``; roles from ``infra/grants.json``; state
machines from the ASL files in ``functions/statemachines``, with their
``${XxxFunctionArn}`` placeholders pointing at Lambda functions whose handlers are the
Chalice app's ``@app.lambda_function``s (``workloads``).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import boto3
import requests
from botocore.config import Config
from fsnode_core.tables import create_table_kwargs, table_layouts

from fsnode.localstack import grants, workloads
from fsnode.localstack.errors import StackError
from fsnode.localstack.workloads import lambda_names, snake_case, state_machine_settings

__all__ = [
    "LOCAL_CREDENTIALS",
    "ResourceBuilder",
    "StackResources",
    "control_plane_settings",
    "lambda_names",
    "snake_case",
]
_ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"
_PREFIX = "fsnode"


# The local stack's root user (allowed everything, as an operator is; the moto server
# creates it with this key). They never leave the machine.
class StaticKeys(TypedDict):
    aws_access_key_id: str
    aws_secret_access_key: str


LOCAL_CREDENTIALS: StaticKeys = {
    "aws_access_key_id": "fsnode-local",
    "aws_secret_access_key": "fsnode-local",
}


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
    # Role ARNs by component, and the credentials of those that run outside moto (the
    # API server's functions, edges): {component: {access_key_id, ...}}.
    roles: dict[str, str] = field(default_factory=dict)
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    # With a domain: the public-name settings (FSNODE_EDGE_DOMAIN...) and the local
    # public issuer's root, which clients trust as devices trust public roots.
    public_names: dict[str, str] = field(default_factory=dict)
    public_issuer_pem: str = ""


class ResourceBuilder:
    """Creates every resource of one local stack against one moto endpoint."""

    def __init__(self, endpoint: str, region: str, functions_dir: Path) -> None:
        self._endpoint = endpoint
        self._region = region
        self._functions_dir = functions_dir
        self._config = Config(retries={"max_attempts": 3, "mode": "standard"})

    def client(self, service: str) -> Any:
        # The service is chosen at run time (the stubs type only literal names).
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self._endpoint,
            region_name=self._region,
            config=self._config,
            **LOCAL_CREDENTIALS,
        )

    def _public_names(self, domain: str, secret_arns: dict[str, str]) -> tuple[dict[str, str], str]:
        """moto's Route 53 zone for ``domain``, an exportable public certificate for
        ``*.edges.DOMAIN`` (issued by the local public issuer, acm_public_issuer) and the
        secret its export goes to: the settings naming them, and the issuer's root."""
        zone = self.client("route53").create_hosted_zone(
            Name=domain, CallerReference=secrets.token_hex(8)
        )["HostedZone"]["Id"]
        acm = self.client("acm")
        arn = acm.request_certificate(
            DomainName=f"*.{edge_domain(domain)}",
            ValidationMethod="DNS",
            Options={"Export": "ENABLED"},
        )["CertificateArn"]
        issuer_pem = str(acm.get_certificate(CertificateArn=arn)["CertificateChain"])
        secret_arns["public_certificate"] = self._secret(f"{_PREFIX}/public-certificate", "{}")
        return {
            "FSNODE_EDGE_DOMAIN": edge_domain(domain),
            "FSNODE_HOSTED_ZONE_ID": str(zone).rsplit("/", 1)[-1],
            "FSNODE_PUBLIC_CERTIFICATE_ARN": str(arn),
            "FSNODE_PUBLIC_CERTIFICATE_SECRET": secret_arns["public_certificate"],
        }, issuer_pem

    def build(self, control_plane_env: dict[str, str], domain: str | None = None) -> StackResources:
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
            "signing_keyring": self._secret(f"{_PREFIX}/share-signing-keys", keyring),
            "admin_key": self._secret(f"{_PREFIX}/admin-api-key", api_key),
        }
        public, issuer_pem = self._public_names(domain, secret_arns) if domain else ({}, "")
        resources = StackResources(
            bucket=bucket,
            tables=tables,
            ca_arn=ca_arn,
            ca_cert_pem=ca_cert,
            join_token=join_token,
            api_key=api_key,
            secrets=secret_arns,
            state_machines={},
            public_names=public,
            public_issuer_pem=issuer_pem,
        )
        imports = [
            name.strip()
            for name in control_plane_env.get("FSNODE_IMPORT_BUCKETS", "").split(",")
            if name.strip() and name.strip() != bucket
        ]
        names = grants.LocalNames(
            region=self._region,
            tables=tables,
            bucket=bucket,
            import_buckets=tuple(imports),
            ca_arn=ca_arn,
            secrets=secret_arns,
            function_prefix=f"{_PREFIX}-",
            zone_id=public.get("FSNODE_HOSTED_ZONE_ID", ""),
            public_certificate_arn=public.get("FSNODE_PUBLIC_CERTIFICATE_ARN", ""),
            machine_prefix=f"{_PREFIX}-",
        )
        env = {**control_plane_env, **control_plane_settings(resources)}
        made = workloads.create(self.client, self._functions_dir, names, env)
        return StackResources(
            **{
                **{name: getattr(resources, name) for name in StackResources.__dataclass_fields__},
                "state_machines": made.state_machines,
                "roles": made.roles,
                "credentials": made.credentials,
            }
        )

    def enforce_iam(self) -> None:
        """From now on every request must be signed by a known caller and be allowed by its
        policies (moto's authentication, fsnode's authorization: iam_enforcement)."""
        requests.post(
            f"{self._endpoint}/moto-api/reset-auth", data=b"0", timeout=10
        ).raise_for_status()

    def role(
        self, name: str, policy: dict[str, Any] | None = None, principal: str = "function"
    ) -> str:
        """A role of its own (tests): allowed everything unless ``policy`` says otherwise."""
        iam = self.client("iam")
        arn = str(
            iam.create_role(
                RoleName=name, AssumeRolePolicyDocument=json.dumps(grants.trust_policy(principal))
            )["Role"]["Arn"]
        )
        iam.put_role_policy(
            RoleName=name,
            PolicyName="grants",
            PolicyDocument=json.dumps(
                policy
                or {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        return arn

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
                        "Enabled": True,
                        "AttributeName": layout["ttl_attribute"],
                    },
                )
            names[logical] = name
        return names

    def _create_ca(self) -> tuple[str, str]:
        return make_root_ca(self.client("acm-pca"), "fsnode local root CA")

    def _secret(self, name: str, value: str) -> str:
        return str(
            self.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        )


def edge_domain(domain: str) -> str:
    """The zone the edges' public names live in: ``edges.DOMAIN``."""
    return f"edges.{domain.strip().rstrip('.').lower()}"


def control_plane_settings(resources: StackResources) -> dict[str, str]:
    """The control plane's environment for these resources (names per PROTOCOL.md)."""
    return {
        "FSNODE_NODES_TABLE": resources.tables["nodes"],
        "FSNODE_CHUNKS_TABLE": resources.tables["chunks"],
        "FSNODE_IDEMPOTENCY_TABLE": resources.tables["idempotency"],
        "FSNODE_BUCKET": resources.bucket,
        "FSNODE_CA_ARN": resources.ca_arn,
        "FSNODE_JOIN_TOKEN_SECRET": resources.secrets["join_token"],
        "FSNODE_SIGNING_KEY_SECRET": resources.secrets["signing_keyring"],
        "FSNODE_ADMIN_KEY_SECRET": resources.secrets["admin_key"],
        "FSNODE_API_KEYS_TABLE": resources.tables["api_keys"],
        # Edges register with a GetCallerIdentity request signed as this role.
        "FSNODE_EDGE_ROLE_ARN": workloads.role_arn("edge"),
        **resources.public_names,
        **state_machine_settings(resources.state_machines),
        **workloads.function_settings(),
    }


def make_root_ca(pca: Any, common_name: str) -> tuple[str, str]:
    """An ACTIVE root private CA signed by itself, as ``fsnode local up`` makes one:
    its ARN and PEM certificate."""
    arn = pca.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": {"CommonName": common_name, "Organization": "fsnode"},
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
        raise StackError(f"private CA is {status['CertificateAuthority']['Status']}")
    return arn, cert


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
