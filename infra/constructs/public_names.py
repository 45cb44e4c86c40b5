"""Per-edge public names (issue 19): ``NODE_ID.edges.DOMAIN`` in the hosted zone from
cdk.json, and an ACM exportable public wildcard certificate for ``*.edges.DOMAIN``.

The control plane creates and removes the records as nodes are placed and die or
drain (chalicelib.public_names); the ``refresh_public_certificate`` function exports
the certificate into a secret (encrypted with KMS at rest) on a schedule, so ACM's
renewals reach the edges, which fetch it over their node channel and serve it by SNI.
Without a domain and zone nothing is created, and synthesis says so: edges are then
reached at their endpoints with private-CA certificates.
"""

from __future__ import annotations

from aws_cdk import Annotations, CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.nag import acknowledge

# ACM renews managed certificates 60 days before expiry: twice a day is plenty.
REFRESH_SCHEDULE = "rate(12 hours)"
NO_DOMAIN = ("none: set domain_name and hosted_zone_id in cdk.json for per-edge public "
             "names with a publicly trusted certificate; until then viewers must trust "
             "the private CA (README, Trusting the edges from an app)")


class PublicNames(Construct):
    """The edges' zone, wildcard certificate and the secret its export is kept in."""

    def __init__(self, scope: Construct, construct_id: str, *, domain_name: str | None,
                 hosted_zone_id: str | None, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.edge_domain = (f"edges.{domain_name.rstrip('.').lower()}"
                            if domain_name and hosted_zone_id else None)
        self.certificate: acm.CfnCertificate | None = None
        self.secret: secretsmanager.Secret | None = None
        self.zone_arn: str | None = None
        if self.edge_domain is None:
            Annotations.of(self).add_warning(f"Per-edge public names: {NO_DOMAIN}")
            CfnOutput(self, "PublicEdgeNames", value=NO_DOMAIN)
            return
        assert hosted_zone_id is not None
        self.zone_id = hosted_zone_id
        self.zone_arn = Stack.of(self).format_arn(
            service="route53", region="", account="", resource="hostedzone",
            resource_name=hosted_zone_id)
        self.certificate = acm.CfnCertificate(
            self, "Wildcard", domain_name=f"*.{self.edge_domain}", validation_method="DNS",
            domain_validation_options=[acm.CfnCertificate.DomainValidationOptionProperty(
                domain_name=f"*.{self.edge_domain}", hosted_zone_id=hosted_zone_id)],
            certificate_export="ENABLED")
        self.secret = secretsmanager.Secret(
            self, "Exported", description="fsnode edges' public certificate and key "
            "(exported from ACM by refresh_public_certificate)",
            secret_string_value=None, removal_policy=removal_policy)
        acknowledge(self.secret, "AwsSolutions-SMG4",
                    "Rotated by ACM: refresh_public_certificate writes each renewal's export "
                    "into it on a schedule; a rotation Lambda would have nothing to add.")
        CfnOutput(self, "PublicEdgeNames", value=f"NODE_ID.{self.edge_domain}")

    def settings(self) -> dict[str, str]:
        """The control plane's public-name settings (empty strings: none)."""
        return {
            "FSNODE_EDGE_DOMAIN": self.edge_domain or "",
            "FSNODE_HOSTED_ZONE_ID": self.zone_id if self.edge_domain else "",
            "FSNODE_PUBLIC_CERTIFICATE_ARN": self.certificate.ref if self.certificate else "",
            "FSNODE_PUBLIC_CERTIFICATE_SECRET": self.secret.secret_arn if self.secret else "",
        }

    def schedule_refresh(self, function: lambda_.IFunction) -> None:
        """Export ACM's renewals on a schedule (the first export happens on demand)."""
        if self.certificate is None:
            return
        events.Rule(self, "Refresh", schedule=events.Schedule.expression(REFRESH_SCHEDULE),
                    targets=[targets.LambdaFunction(function)])
