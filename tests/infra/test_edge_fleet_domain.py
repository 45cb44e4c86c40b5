"""The edge fleet behind a public domain name: a public certificate on a TLS front door,
and with a hosted zone, DNS validation and a name pointing at the NLB."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk.assertions import Match, Template

from infra import paths
from infra.constructs.edge_fleet import EdgeFleet
from infra.constructs.edge_network import LISTENER_PORT, TLS_PORT
from infra.constructs.public_domain import PublicDomain


# A bare stack with only the fleet and the public name: quick to synthesize.
@pytest.fixture(scope="module")
def domain_templates() -> dict[str, Template]:
    built: dict[str, Template] = {}
    for case, zone in (("zone", "Z0123456789ABCDEFGHIJ"), ("no-zone", None)):
        stack = cdk.Stack(cdk.App(), "Bare", env=cdk.Environment(region="eu-west-1"))
        domain = PublicDomain(
            stack, "PublicDomain", domain_name="CDN.Example.com", hosted_zone_id=zone
        )
        fleet = EdgeFleet(
            stack,
            "EdgeFleet",
            build_context=paths.REPO_ROOT,
            dockerfile=paths.EDGE_DOCKERFILE,
            join_token=secretsmanager.Secret(stack, "Token"),
            api_url="https://api.example.com/api/",
            certificate=domain.certificate,
            min_count=1,
            max_count=1,
        )
        domain.point_at(fleet.load_balancer)
        built[case] = Template.from_stack(stack)
    return built


def test_domain_puts_a_public_certificate_on_a_tls_front_door(
    domain_templates: dict[str, Template],
) -> None:
    for template in domain_templates.values():
        (certificate_id,) = template.find_resources("AWS::CertificateManager::Certificate")
        template.has_resource_properties(
            "AWS::CertificateManager::Certificate",
            {"DomainName": "cdn.example.com", "ValidationMethod": "DNS"},
        )
        template.has_resource_properties(
            "AWS::ElasticLoadBalancingV2::Listener",
            {
                "Port": LISTENER_PORT,
                "Protocol": "TLS",
                "Certificates": [{"CertificateArn": {"Ref": certificate_id}}],
                "SslPolicy": Match.string_like_regexp("TLS13"),
            },
        )
        # Re-encrypted to the edge, which keeps its private-CA certificate.
        template.has_resource_properties(
            "AWS::ElasticLoadBalancingV2::TargetGroup",
            {"Port": TLS_PORT, "Protocol": "TLS", "TargetType": "instance"},
        )


def test_with_a_hosted_zone_the_certificate_validates_and_the_name_points_at_the_nlb(
    domain_templates: dict[str, Template],
) -> None:
    template = domain_templates["zone"]
    template.has_resource_properties(
        "AWS::CertificateManager::Certificate",
        {
            "DomainValidationOptions": [
                {"DomainName": "cdn.example.com", "HostedZoneId": "Z0123456789ABCDEFGHIJ"}
            ]
        },
    )
    (nlb_id,) = template.find_resources("AWS::ElasticLoadBalancingV2::LoadBalancer")
    template.resource_count_is("AWS::Route53::RecordSet", 1)
    template.has_resource_properties(
        "AWS::Route53::RecordSet",
        {
            "Name": "cdn.example.com.",
            "Type": "A",
            "HostedZoneId": "Z0123456789ABCDEFGHIJ",
            "AliasTarget": Match.object_like(
                {"DNSName": Match.object_like({"Fn::Join": Match.any_value()})}
            ),
        },
    )
    assert nlb_id in json.dumps(template.find_resources("AWS::Route53::RecordSet"))


def test_without_a_zone_no_record_and_manual_validation(
    domain_templates: dict[str, Template],
) -> None:
    template = domain_templates["no-zone"]
    template.resource_count_is("AWS::Route53::RecordSet", 0)
    (certificate,) = template.find_resources("AWS::CertificateManager::Certificate").values()
    assert "HostedZoneId" not in json.dumps(certificate)
