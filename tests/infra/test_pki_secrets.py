"""PKI (ACM Private CA root) and the shared secrets."""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk.assertions import Match, Template

from infra.constructs.pki import Pki

from .conftest import Resources, of_type


def test_root_ca_is_created_signed_and_activated(template: Template, resources: Resources) -> None:
    template.resource_count_is("AWS::ACMPCA::CertificateAuthority", 1)
    template.has_resource_properties(
        "AWS::ACMPCA::CertificateAuthority",
        {"Type": "ROOT", "KeyAlgorithm": "RSA_2048", "SigningAlgorithm": "SHA256WITHRSA"},
    )
    (ca_id,) = of_type(resources, "AWS::ACMPCA::CertificateAuthority")
    (cert,) = of_type(resources, "AWS::ACMPCA::Certificate").values()
    props = cert["Properties"]
    assert props["CertificateAuthorityArn"] == {"Fn::GetAtt": [ca_id, "Arn"]}
    assert props["CertificateSigningRequest"] == {
        "Fn::GetAtt": [ca_id, "CertificateSigningRequest"]
    }
    assert "template/RootCACertificate/V1" in json.dumps(props["TemplateArn"])
    template.has_resource_properties(
        "AWS::ACMPCA::CertificateAuthorityActivation",
        {
            "CertificateAuthorityArn": {"Fn::GetAtt": [ca_id, "Arn"]},
            "Certificate": {"Fn::GetAtt": [Match.any_value(), "Certificate"]},
            "Status": "ACTIVE",
        },
    )


def test_existing_ca_creates_nothing() -> None:
    stack = cdk.Stack(cdk.App(), "Bare")
    arn = "arn:aws:acm-pca:us-east-1:111122223333:certificate-authority/abc"
    pki = Pki(stack, "Pki", common_name="x", existing_ca_arn=arn)
    assert pki.ca_arn == arn and pki.authority is None
    Template.from_stack(stack).resource_count_is("AWS::ACMPCA::CertificateAuthority", 0)


def test_secrets_generate_join_token_keyring_and_admin_key(template: Template) -> None:
    template.resource_count_is("AWS::SecretsManager::Secret", 3)
    template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {
            "GenerateSecretString": {
                "SecretStringTemplate": '{"active": "k1"}',
                "GenerateStringKey": "k1",
                "PasswordLength": 64,
                "ExcludePunctuation": True,
            }
        },
    )
    template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {"GenerateSecretString": {"ExcludePunctuation": True, "PasswordLength": 48}},
    )
