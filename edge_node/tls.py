"""The node's TLS identity: an RSA key kept in the state dir, a CSR naming exactly
the endpoint host, and a server SSLContext built from the certificate the control
plane had the private CA issue.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

KEY_FILE = "node.key"
CERT_FILE = "node.crt"  # leaf followed by the chain, as servers load it
ROOT_FILE = "root.crt"
RSA_BITS = 2048


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically (temp file, fsync, rename) with mode 0600.

    The temp file is created 0600 by mkstemp, so the secret is never readable by
    others even for a moment, and readers never see a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename itself is durable only once the directory is synced.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_or_create_key(state_dir: Path) -> rsa.RSAPrivateKey:
    """The node's private key, created on first start and reused after restarts."""
    path = state_dir / KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= RSA_BITS:
            return key
    key = new_key()
    save_key(state_dir, key)
    return key


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def save_key(state_dir: Path, key: rsa.RSAPrivateKey) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = state_dir / KEY_FILE
    write_private(path, pem)
    return path


def subject_alt_name(host: str) -> x509.GeneralName:
    """An IP SAN for an IP literal, else a DNS SAN: clients match on exactly one."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host.lower())


def build_csr(key: rsa.RSAPrivateKey, host: str) -> str:
    """A PEM CSR whose only subject alternative name is ``host``."""
    if not host:
        raise ValueError("the endpoint host is empty")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName([subject_alt_name(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def save_certificate(state_dir: Path, certificate: str, chain: str, root: str | None) -> Path:
    """Write the leaf plus its chain (and the root, for clients) atomically; return the path."""
    leaf = x509.load_pem_x509_certificate(certificate.encode())
    if leaf.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        raise ValueError("the issued certificate has already expired")
    parts = [certificate.strip()]
    if chain and chain.strip():
        parts.append(chain.strip())
    path = state_dir / CERT_FILE
    write_private(path, ("\n".join(parts) + "\n").encode())
    if root and root.strip():
        write_private(state_dir / ROOT_FILE, (root.strip() + "\n").encode())
    return path


def certificate_expiry(state_dir: Path) -> dt.datetime:
    """When the stored leaf certificate stops being valid (UTC)."""
    leaf = x509.load_pem_x509_certificate((state_dir / CERT_FILE).read_bytes())
    return leaf.not_valid_after_utc


def renewal_time(not_before: dt.datetime, not_after: dt.datetime, margin: float) -> dt.datetime:
    """When to renew: at 2/3 of the lifetime, or ``margin`` seconds before expiry if
    sooner, but never before half of it (a margin longer than the lifetime would
    otherwise ask for a new certificate as soon as one arrives)."""
    lifetime = not_after - not_before
    due = min(not_before + lifetime * 2 / 3, not_after - dt.timedelta(seconds=margin))
    return max(due, not_before + lifetime / 2)


def stored_renewal_time(state_dir: Path, margin: float) -> dt.datetime:
    """``renewal_time`` of the certificate in ``state_dir``."""
    leaf = x509.load_pem_x509_certificate((state_dir / CERT_FILE).read_bytes())
    return renewal_time(leaf.not_valid_before_utc, leaf.not_valid_after_utc, margin)


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server context (TLS 1.2 minimum) serving the node's certificate chain.

    Calling ``load_cert_chain`` again on the same context later swaps the
    certificate for new handshakes without touching open connections (renewal).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(cert_path), keyfile=str(key_path))
    context.set_alpn_protocols(["http/1.1"])
    return context
