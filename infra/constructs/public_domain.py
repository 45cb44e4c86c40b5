"""The edge fleet's public name: a public ACM certificate and its DNS record.

Edges present certificates from the private CA naming their own hosts, so the
load balancer's shared name can only be trusted by ordinary clients through a
public certificate on the load balancer itself. With ``hosted_zone_id`` the
certificate is validated and the alias record created in that Route 53 zone;
without one the operator adds ACM's validation CNAME and a CNAME or alias to
the load balancer by hand (the deploy waits for the validation).
"""

from __future__ import annotations

from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from constructs import Construct


class PublicDomain(Construct):
    """A DNS-validated public certificate for ``domain_name``; records once pointed."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domain_name: str,
        hosted_zone_id: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.domain_name = domain_name.rstrip(".").lower()
        self.zone: route53.IHostedZone | None = (
            route53.HostedZone.from_hosted_zone_id(self, "Zone", hosted_zone_id)
            if hosted_zone_id
            else None
        )
        self.certificate = acm.Certificate(
            self,
            "Certificate",
            domain_name=self.domain_name,
            validation=acm.CertificateValidation.from_dns(self.zone),
        )
        self.records: list[route53.RecordSet] = []

    @property
    def url(self) -> str:
        return f"https://{self.domain_name}"

    def point_at(self, load_balancer: elbv2.INetworkLoadBalancer) -> None:
        """Alias ``domain_name`` to the load balancer (only when the zone is ours to edit)."""
        if self.zone is None:
            return
        self.records.append(
            route53.ARecord(
                self,
                "Alias",
                zone=self.zone,
                # Fully qualified (trailing dot): a zone known only by id has no name to append.
                record_name=f"{self.domain_name}.",
                target=route53.RecordTarget.from_alias(
                    route53_targets.LoadBalancerTarget(load_balancer)
                ),
            )
        )
