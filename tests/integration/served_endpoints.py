"""A registering node's endpoint, really served: a TLS listener on a free loopback
port that completes handshakes with the certificate the CA issued to that node and
its key, as an edge does, so the control plane's probe can see it."""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization


class ServedEndpoint:
    """Bind first (the port goes into the CSR's endpoint), serve once the certificate
    is issued; ``close`` stops it (a node that went away)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"https://127.0.0.1:{self.port}"
        self._context: ssl.SSLContext | None = None
        self._thread: threading.Thread | None = None

    def serve(self, key: Any, certificate: str, chain: str = "") -> None:
        """Present ``certificate`` (with ``chain``) signed for by ``key``, from now on;
        calling it again swaps the certificate for new handshakes."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as scratch:
            cert_path, key_path = Path(scratch) / "c.pem", Path(scratch) / "k.pem"
            cert_path.write_text(certificate.strip() + "\n" + chain.strip() + "\n")
            key_path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            context.load_cert_chain(cert_path, key_path)
        self._context = context
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._accept, daemon=True, name=f"served-{self.port}"
            )
            self._thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            with contextlib.suppress(OSError, ssl.SSLError):
                connection.settimeout(5)
                assert self._context is not None
                with self._context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)  # until the prober hangs up
            with contextlib.suppress(OSError):
                connection.close()
