"""The private certificate authority that signs edge nodes' TLS certificates."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_acmpca as acmpca
from constructs import Construct


class Pki(Construct):
    """An ACM Private CA root, activated with its own self-signed certificate.

    With ``existing_ca_arn`` nothing is created and the ARN is only passed on.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        common_name: str,
        existing_ca_arn: str | None = None,
        validity_years: int = 10,
    ) -> None:
        super().__init__(scope, construct_id)
        self.authority: acmpca.CfnCertificateAuthority | None = None
        self.root_certificate: acmpca.CfnCertificate | None = None
        self.activation: acmpca.CfnCertificateAuthorityActivation | None = None
        if existing_ca_arn:
            self.ca_arn = existing_ca_arn
            return

        self.authority = acmpca.CfnCertificateAuthority(
            self,
            "Authority",
            type="ROOT",
            key_algorithm="RSA_2048",
            signing_algorithm="SHA256WITHRSA",
            subject=acmpca.CfnCertificateAuthority.SubjectProperty(
                common_name=common_name, organization="fsnode"
            ),
            # No revocation configuration: edge certificates are short-lived and
            # renewed by the node, so expiry does the work a CRL would.
            usage_mode="GENERAL_PURPOSE",
        )
        self.root_certificate = acmpca.CfnCertificate(
            self,
            "RootCertificate",
            certificate_authority_arn=self.authority.attr_arn,
            certificate_signing_request=self.authority.attr_certificate_signing_request,
            signing_algorithm="SHA256WITHRSA",
            template_arn=Stack.of(self).format_arn(
                service="acm-pca",
                region="",
                account="",
                resource="template",
                resource_name="RootCACertificate/V1",
            ),
            validity=acmpca.CfnCertificate.ValidityProperty(type="YEARS", value=validity_years),
        )
        self.activation = acmpca.CfnCertificateAuthorityActivation(
            self,
            "Activation",
            certificate_authority_arn=self.authority.attr_arn,
            certificate=self.root_certificate.attr_certificate,
            status="ACTIVE",
        )
        self.ca_arn = self.authority.attr_arn
