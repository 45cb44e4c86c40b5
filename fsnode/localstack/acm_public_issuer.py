"""ACM public certificates in moto, issued by a local CA that plays the public issuer.

moto answers ``RequestCertificate`` with a certificate signed by a throwaway key under
an "Amazon" issuer name, which nothing can verify. With this patch (in the moto server
process) a public certificate request is signed by one local root per process, the
"fsnode local public issuer", kept as the certificate's chain, and is ISSUED at once
(in AWS, DNS validation through the hosted zone fsnode manages). Clients of the local
stack trust that root (``public-ca.pem`` in the state folder) as devices trust the
public roots. Export (``ExportCertificate``, Export=ENABLED) then works as in AWS.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fsnode.localstack.moto_patches import Patches

VALIDITY = dt.timedelta(days=198)  # ACM public certificates last 198 days
_patches = Patches()


@cache
def issuer() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """This process's public issuer: a root key and its self-signed certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fsnode local public issuer")])
    now = dt.datetime.now(dt.UTC)
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, root


def issue(names: list[str], key: rsa.RSAPrivateKey) -> x509.Certificate:
    """A server certificate for ``names`` (DNS), signed by the local public issuer."""
    root_key, root = issuer()
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(root.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))


def install() -> None:
    """Patch moto's ACM in this process (once)."""
    from moto.acm.models import CertBundle

    if _patches.active:
        return
    original = CertBundle.generate_cert.__func__  # type: ignore[attr-defined]

    def generate_cert(cls: Any, domain_name: str, account_id: str, region: str,
                      sans: list[str] | None = None,
                      cert_authority_arn: str | None = None) -> Any:
        if cert_authority_arn is not None:  # a private certificate: moto's own way
            return original(cls, domain_name, account_id, region, sans, cert_authority_arn)
        names = list(dict.fromkeys([domain_name, *(sans or [])]))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        certificate = issue(names, key)
        bundle = cls(account_id=account_id, region=region, cert_type="AMAZON_ISSUED",
                     cert_status="ISSUED",
                     certificate=certificate.public_bytes(serialization.Encoding.PEM),
                     private_key=key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                                   serialization.NoEncryption()))
        bundle.chain = issuer()[1].public_bytes(serialization.Encoding.PEM)
        return bundle

    _patches.set(CertBundle, "generate_cert", classmethod(generate_cert))
