"""The edge's public certificate (issue 19): served by SNI for names under the edge
domain, the private-CA identity otherwise, and swapped on renewal for new handshakes
while an open stream carries on."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from edge_node import tls
from edge_node.public_tls import PublicTls
from fsnode.localstack import acm_public_issuer, processes

DOMAIN = "edges.example.test"


def public_bundle(serial: str) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = acm_public_issuer.issue([f"*.{DOMAIN}"], key)
    return {
        "name": f"*.{DOMAIN}",
        "serial": serial,
        "not_after": "",
        "certificate": leaf.public_bytes(serialization.Encoding.PEM).decode(),
        "chain": acm_public_issuer.issuer()[1].public_bytes(serialization.Encoding.PEM).decode(),
        "private_key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    }


def _private_identity(state: Path) -> ssl.SSLContext:
    """A self-signed stand-in for the private-CA leaf naming 127.0.0.1."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    tls.save_key(state, key)
    path = tls.save_certificate(
        state, cert.public_bytes(serialization.Encoding.PEM).decode(), "", None
    )
    return tls.server_context(path, state / tls.KEY_FILE)


async def _peer_serial(port: int, name: str | None) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=name or ""
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der).serial_number


def test_renewal_swaps_the_public_certificate_without_cutting_a_stream(tmp_path: Path) -> None:
    asyncio.run(_renewal(tmp_path))


async def _renewal(tmp_path: Path) -> None:
    context = _private_identity(tmp_path)
    public = PublicTls(tmp_path, client=None)
    public.install(context)
    first = public_bundle("1")
    public.load(first)
    release = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"a" * 1000)
        await release.wait()
        await response.write(b"b" * 1000)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    port = processes.free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        name = f"n1.{DOMAIN}"
        verify = ssl.create_default_context(cadata=first["chain"])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=verify, server_hostname=name
        )
        writer.write(f"GET /stream HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        head = await reader.readuntil(b"a" * 10)
        assert b"200 OK" in head
        old = x509.load_pem_x509_certificate(first["certificate"].encode()).serial_number
        assert await _peer_serial(port, name) == old
        second = public_bundle("2")
        public.load(second)  # what a heartbeat naming serial 2 leads to
        new = x509.load_pem_x509_certificate(second["certificate"].encode()).serial_number
        assert await _peer_serial(port, name) == new
        # Other names and IP clients keep the node's private identity.
        assert await _peer_serial(port, None) == 1
        assert await _peer_serial(port, "edge.other.test") == 1
        release.set()
        rest = await asyncio.wait_for(reader.read(), timeout=10)
        assert rest.count(b"b") == 1000, "the stream begun before the renewal was cut"
        writer.close()
        assert public.swaps == 1 and public.serial == "2"
        assert (tmp_path / "public.key").stat().st_mode & 0o777 == 0o600
    finally:
        await runner.cleanup()
