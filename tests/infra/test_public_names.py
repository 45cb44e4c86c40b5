"""Per-edge public names in the template (issue 19): with a domain and zone, the
exportable wildcard certificate, its secret and the grants; without, a clear 'none'."""

from __future__ import annotations

from typing import Any

from .conftest import CUSTOM_CONTEXT, Synthesis, of_type

EDGE_DOMAIN = f"edges.{CUSTOM_CONTEXT['domain_name']}"


def _env(resources: dict[str, Any]) -> dict[str, Any]:
    return dict(resources["APIHandler"]["Properties"]["Environment"]["Variables"])


def test_without_a_domain_synthesis_says_there_are_no_public_names(
    synthesis: Synthesis, resources: dict[str, Any]
) -> None:
    outputs = synthesis.template["Outputs"]
    (value,) = [
        o["Value"] for k, o in outputs.items() if k.startswith("PublicNamesPublicEdgeNames")
    ]
    assert value.startswith("none: set domain_name and hosted_zone_id")
    assert not [
        c
        for c in of_type(resources, "AWS::CertificateManager::Certificate").values()
        if c["Properties"].get("CertificateExport") == "ENABLED"
    ]
    assert _env(resources)["FSNODE_EDGE_DOMAIN"] == ""


def test_with_a_domain_an_exportable_wildcard_and_its_secret(custom_synthesis: Synthesis) -> None:
    resources = custom_synthesis.template["Resources"]
    (certificate,) = [
        c
        for c in of_type(resources, "AWS::CertificateManager::Certificate").values()
        if c["Properties"].get("CertificateExport") == "ENABLED"
    ]
    props = certificate["Properties"]
    assert props["DomainName"] == f"*.{EDGE_DOMAIN}" and props["ValidationMethod"] == "DNS"
    assert props["DomainValidationOptions"] == [
        {"DomainName": f"*.{EDGE_DOMAIN}", "HostedZoneId": CUSTOM_CONTEXT["hosted_zone_id"]}
    ]
    env = _env(resources)
    assert env["FSNODE_EDGE_DOMAIN"] == EDGE_DOMAIN
    assert env["FSNODE_HOSTED_ZONE_ID"] == CUSTOM_CONTEXT["hosted_zone_id"]
    secret_id = env["FSNODE_PUBLIC_CERTIFICATE_SECRET"]["Ref"]
    assert resources[secret_id]["Type"] == "AWS::SecretsManager::Secret"
    # The API handler may change records in that zone and read the secret, nothing more.
    statements = [
        s
        for p in of_type(resources, "AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    route53 = [s for s in statements if s["Action"] == "route53:ChangeResourceRecordSets"]
    assert route53 and all(
        "hostedzone/" + CUSTOM_CONTEXT["hosted_zone_id"] in str(s["Resource"]) for s in route53
    )
