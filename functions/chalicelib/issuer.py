"""The ``issue_certificate`` function: the only role that may have the CA sign.

It checks the CSR against the endpoint, and the endpoint against the fleet's
namespace, again (the CA signs nothing the register and renew rules would refuse,
whoever invokes it) and signs with the algorithm of the CA's
own key: ACM Private CA refuses a signing algorithm of another key type, so an EC
CSR under an RSA CA is signed SHA256WITHRSA.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError
from fsnode_core.errors import InvalidInput, Unavailable

from chalicelib import aws, pki, validate
from chalicelib.settings import get_settings

END_ENTITY_TEMPLATE = "arn:aws:acm-pca:::template/EndEntityCertificate/V1"
# ACM Private CA key algorithms and the signing algorithm each takes.
_SIGNING_BY_KEY = {
    "RSA_2048": "SHA256WITHRSA", "RSA_3072": "SHA256WITHRSA", "RSA_4096": "SHA256WITHRSA",
    "EC_prime256v1": "SHA256WITHECDSA", "EC_secp384r1": "SHA384WITHECDSA",
    "EC_secp521r1": "SHA512WITHECDSA",
}


def issue(event: dict[str, Any]) -> dict[str, Any]:
    """``{endpoint, csr, validity_days, idempotency_token?}`` → ``{arn, certificate, chain,
    root}``."""
    endpoint = pki.parse_endpoint(validate.string(event, "endpoint", max_len=300) or "")
    pem = validate.string(event, "csr", max_len=pki.MAX_CSR_BYTES) or ""
    pki.check_csr(pem, endpoint)
    pki.check_namespace(endpoint, get_settings().node_namespace)
    days = validate.integer(event, "validity_days", low=1, high=3650)
    token = event.get("idempotency_token")
    ca_arn = get_settings().ca_arn
    pca = aws.client("acm-pca")
    kwargs: dict[str, Any] = {
        "CertificateAuthorityArn": ca_arn,
        "Csr": pem.encode(),
        "SigningAlgorithm": signing_algorithm(ca_arn),
        "TemplateArn": END_ENTITY_TEMPLATE,
        "Validity": {"Value": days, "Type": "DAYS"},
    }
    if isinstance(token, str) and token:
        kwargs["IdempotencyToken"] = token[:36]
    try:
        arn = pca.issue_certificate(**kwargs)["CertificateArn"]
        # Issuance is asynchronous in AWS; the waiter polls get_certificate briefly.
        pca.get_waiter("certificate_issued").wait(
            CertificateAuthorityArn=ca_arn, CertificateArn=arn,
            WaiterConfig={"Delay": 1, "MaxAttempts": 20},
        )
        leaf = pca.get_certificate(CertificateAuthorityArn=ca_arn, CertificateArn=arn)
        root = pca.get_certificate_authority_certificate(CertificateAuthorityArn=ca_arn)
    except (ClientError, BotoCoreError, WaiterError) as exc:
        raise Unavailable("the certificate authority could not issue a certificate") from exc
    return {"arn": arn, "certificate": leaf["Certificate"],
            "chain": leaf.get("CertificateChain") or root["Certificate"],
            "root": root["Certificate"]}


@cache
def signing_algorithm(ca_arn: str) -> str:
    """The signing algorithm of the CA's key type (read once per process)."""
    try:
        described = aws.client("acm-pca").describe_certificate_authority(
            CertificateAuthorityArn=ca_arn)
    except (ClientError, BotoCoreError) as exc:
        raise Unavailable("the certificate authority cannot be described") from exc
    config = described["CertificateAuthority"]["CertificateAuthorityConfiguration"]
    key = str(config["KeyAlgorithm"])
    if key not in _SIGNING_BY_KEY:
        raise InvalidInput(f"the CA's key algorithm {key} is not one fsnode knows")
    return _SIGNING_BY_KEY[key]
