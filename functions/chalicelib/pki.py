"""Node certificates: check the CSR names exactly the node's endpoint, then have the
``issue_certificate`` function (chalicelib.issuer, the only role that may) issue it."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from fsnode_core.errors import Forbidden, InvalidInput
from fsnode_core.node_attestation import key_binding

from chalicelib import invoke
from chalicelib.settings import get_settings

MIN_RSA_BITS = 2048
MAX_CSR_BYTES = 16 * 1024
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")

Host = ipaddress.IPv4Address | ipaddress.IPv6Address | str
# What cryptography raises for a CSR it cannot read (a duplicate extension, an unknown
# name type or algorithm are not ValueErrors).
_UNPARSABLE = (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension,
               x509.UnsupportedGeneralNameType)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A node's public endpoint: ``https://HOST:PORT``."""

    url: str
    host: Host
    port: int


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A leaf certificate, its chain and the CA's root, all PEM."""

    arn: str
    certificate: str
    chain: str
    root: str


def parse_endpoint(url: str) -> Endpoint:
    """Accept exactly ``https://HOST:PORT`` (no path, query, user or wildcard)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput("endpoint must be https://HOST:PORT", field="endpoint") from exc
    if (parts.scheme != "https" or port is None or not 0 < port < 65536 or parts.username
            or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment
            or not parts.hostname):
        raise InvalidInput("endpoint must be https://HOST:PORT", field="endpoint")
    hostname = parts.hostname.lower()
    host: Host
    try:
        host = ipaddress.ip_address(hostname)
    except ValueError:
        labels = hostname.rstrip(".").split(".")
        if len(hostname) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
            raise InvalidInput("endpoint host is not a valid DNS name or IP address",
                               field="endpoint") from None
        host = hostname.rstrip(".")
    shown = f"[{host}]" if isinstance(host, ipaddress.IPv6Address) else str(host)
    return Endpoint(url=f"https://{shown}:{port}", host=host, port=port)


def check_namespace(endpoint: Endpoint, namespace: tuple[str, ...]) -> None:
    """Forbidden unless the endpoint's host is in the fleet's namespace: a DNS name
    ending in one of its ``.suffix`` entries, or an address in one of its networks.
    The CA issues for no other name (a certificate for someone else's host, valid for
    server auth, would let its holder stand in for that host towards fsnode clients)."""
    for entry in namespace:
        if isinstance(endpoint.host, str):
            if entry.startswith(".") and endpoint.host.endswith(entry.lower()):
                return
        elif not entry.startswith("."):
            network = ipaddress.ip_network(entry, strict=False)
            if endpoint.host.version == network.version and endpoint.host in network:
                return
    raise Forbidden("endpoint host is outside the fleet's namespace (FSNODE_NODE_NAMESPACE)",
                    field="endpoint", host=str(endpoint.host), namespace=list(namespace))


def check_csr(pem: str, endpoint: Endpoint) -> x509.CertificateSigningRequest:
    """The parsed CSR, if it names exactly the endpoint's host (with a key we accept)."""
    if len(pem) > MAX_CSR_BYTES:
        raise InvalidInput("csr is too large", field="csr")
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
        _check_key(csr)  # before the signature: only known key types
        signature_ok = csr.is_signature_valid
    except _UNPARSABLE as exc:
        raise InvalidInput("csr is not a PEM certificate signing request", field="csr") from exc
    if not signature_ok:
        raise InvalidInput("csr signature is not valid", field="csr")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise InvalidInput("csr must carry a subjectAltName naming the endpoint host",
                           field="csr") from exc
    except _UNPARSABLE as exc:
        raise InvalidInput("csr extensions cannot be parsed", field="csr") from exc
    names = list(san)
    if isinstance(endpoint.host, str):
        wanted: x509.GeneralName = x509.DNSName(endpoint.host)
        ok = (len(names) == 1 and isinstance(names[0], x509.DNSName)
              and names[0].value.lower().rstrip(".") == endpoint.host)
    else:
        wanted = x509.IPAddress(endpoint.host)
        ok = names == [wanted]
    if not ok:
        raise InvalidInput("csr subjectAltName must be exactly the endpoint host",
                           field="csr", expected=str(endpoint.host),
                           found=[str(getattr(name, "value", name)) for name in names][:8])
    for cn in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        if str(cn.value).lower() != str(endpoint.host):
            raise InvalidInput("csr common name must be the endpoint host or absent",
                               field="csr")
    return csr


def public_key_sha256(csr: x509.CertificateSigningRequest) -> str:
    """SHA-256 of the CSR's public key (DER SubjectPublicKeyInfo): the same key, the same
    value, however often the CSR is signed again."""
    return key_binding(csr.public_key())


def _check_key(csr: x509.CertificateSigningRequest) -> None:
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidInput(f"csr RSA key must be at least {MIN_RSA_BITS} bits",
                               field="csr", key_size=key.key_size)
        return
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return
    raise InvalidInput("csr key must be RSA >= 2048 bits or EC P-256", field="csr")


def issue(endpoint: Endpoint, csr_pem: str, validity_days: int,
          idempotency_token: str | None = None) -> IssuedCertificate:
    """The leaf, chain and root for a CSR already checked against ``endpoint``.

    Issued by the ``issue_certificate`` function, which checks the CSR again: the API
    handler holds no right to the CA."""
    answer = invoke.call(get_settings().issue_certificate_function, {
        "endpoint": endpoint.url, "csr": csr_pem, "validity_days": validity_days,
        "idempotency_token": idempotency_token})
    return IssuedCertificate(**answer)
