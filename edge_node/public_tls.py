"""The edge's public name and its publicly trusted certificate (issue 19).

The control plane hands every placed edge the exported certificate for
``*.EDGE_DOMAIN`` over the node's authenticated channel (its credential, over TLS to
the API); the heartbeat answer carries its serial, so a renewal reaches each edge
within a beat. The edge serves it by SNI: a handshake naming a host under the domain
gets the public certificate, any other (the control plane's probe, peers using the
endpoint, IP literals) the private-CA certificate that stays the node's identity.
A new certificate is loaded into the same context object: new handshakes get it,
open connections and their streams are untouched.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

from fsnode_core.errors import FsnodeError

from edge_node import tls

log = logging.getLogger("edge_node.public_tls")

CERT_FILE = "public.crt"
KEY_FILE = "public.key"


class PublicTls:
    """SNI switching onto the public certificate, and its renewal from heartbeats."""

    def __init__(self, state_dir: Path, client: Any) -> None:
        self._state_dir = state_dir
        self._client = client
        self.suffix: str | None = None  # ".edges.example.com" once a certificate is held
        self.serial: str | None = None
        self.context: ssl.SSLContext | None = None
        self.swaps = 0

    def install(self, server_context: ssl.SSLContext) -> None:
        """Have ``server_context`` hand public names to the public context."""
        server_context.sni_callback = self._sni

    def _sni(
        self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext
    ) -> None:
        if (
            name
            and self.context is not None
            and self.suffix is not None
            and name.lower().endswith(self.suffix)
        ):
            sock.context = self.context

    async def on_heartbeat(self, answer: dict[str, Any]) -> None:
        """Fetch the certificate when the heartbeat names a serial this edge lacks."""
        wanted = answer.get("public_certificate_serial")
        if not wanted or wanted == self.serial:
            return
        try:
            bundle = await self._client.public_certificate()
        except FsnodeError as exc:
            log.warning("cannot fetch the public certificate (%s); next beat retries", exc.message)
            return
        try:
            self.load(bundle)
        except (KeyError, TypeError, ValueError, OSError, ssl.SSLError) as exc:
            # Never the bundle itself in the log: it holds the private key.
            log.error(
                "the control plane sent an unusable public certificate (%s)", type(exc).__name__
            )

    def load(self, bundle: dict[str, Any]) -> None:
        """Store the bundle (key 0600) and swap it in for new handshakes."""
        name = str(bundle["name"])
        if not name.startswith("*."):
            raise ValueError("the public certificate must be a wildcard *.DOMAIN")
        certificate = str(bundle["certificate"]).strip()
        chain = str(bundle.get("chain") or "").strip()
        tls.write_private(self._state_dir / KEY_FILE, str(bundle["private_key"]).encode())
        tls.write_private(
            self._state_dir / CERT_FILE,
            ("\n".join(p for p in (certificate, chain) if p) + "\n").encode(),
        )
        self.use_stored(name, str(bundle["serial"]))

    def use_stored(self, name: str, serial: str) -> None:
        """Swap in the stored certificate for new handshakes (a worker does, when the
        node agent says it stored a new one: ``edge_node.node_state``)."""
        if self.context is None:
            context = tls.server_context(self._state_dir / CERT_FILE, self._state_dir / KEY_FILE)
            self.context = context
        else:
            self.context.load_cert_chain(
                str(self._state_dir / CERT_FILE), str(self._state_dir / KEY_FILE)
            )
            self.swaps += 1
        self.suffix = name[1:].lower()
        self.serial = serial
        log.info("public certificate %s for %s in use", self.serial, name)
