"""The node's identity lifecycle: key and CSR, registration (retried), renewal, and
registering anew when the control plane stops accepting the node.

One process per node runs it (the supervisor, ``edge_node.main``): to the control
plane the node is one node however many workers serve. Each change of identity
(a registration, a renewed certificate) is written to the state folder (key and
certificate files, atomically) and then announced through ``on_change``, which
the supervisor turns into a signal to every worker (``edge_node.node_state``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from collections.abc import Callable
from typing import Any

from fsnode_core.errors import (
    IDEMPOTENCY_KEY_REUSED,
    Conflict,
    Forbidden,
    FsnodeError,
    Gone,
    NotFound,
    Unauthorized,
    Unavailable,
)

from edge_node import aws_identity, registration_key, tls
from edge_node.background import wait_any
from edge_node.control_plane import ControlPlaneClient, Registration, is_drained
from edge_node.settings import EdgeSettings

log = logging.getLogger(__name__)


class FatalStartError(Exception):
    """Registration was refused for a reason retrying cannot fix (bad token, bad CSR)."""


# Told of every new identity: (registration in force, whether the node id changed).
OnChange = Callable[[Registration, bool], None]


class NodeIdentity:
    def __init__(
        self, settings: EdgeSettings, client: ControlPlaneClient, on_change: OnChange
    ) -> None:
        self.settings = settings
        self.client = client
        self._on_change = on_change
        self.registration: Registration | None = None
        self._key: Any = None
        # The idempotency key of the registration in force: the one to rotate away
        # from when the control plane stops accepting that node.
        self._registered_with: str | None = None
        # Registration and renewal both replace the key and certificate files.
        self._lock = asyncio.Lock()
        self._renew_now = asyncio.Event()
        self.renewals = 0

    def request_renewal(self) -> None:
        """Renew the certificate now (SIGHUP), instead of waiting for its due time."""
        self._renew_now.set()

    async def register(self) -> Registration:
        """One registration call; stores the certificate and announces it.

        It sends the stored idempotency key, so a restart (or a retry whose answer
        was lost) gets the same node back, with its certificate."""
        async with self._lock:
            return await self._register()

    async def reregister(self, rejected: str | None = None) -> Registration:
        """Register as a new node: the control plane no longer accepts node
        ``rejected`` (401/403/404, or it says dead)."""
        async with self._lock:
            current = self.registration
            if current is not None and rejected is not None and current.node_id != rejected:
                # Already replaced (a refused renewal got there first): another
                # registration now would orphan that new node.
                return current
            return await self._register_anew()

    async def _register_anew(self) -> Registration:
        previous = self.registration.node_id if self.registration else None
        registration = await self._register(replace_rejected=True, anew=True)
        log.info("registered again (was %s) node_id=%s", previous, registration.node_id)
        return registration

    async def _register(
        self, *, replace_rejected: bool = False, anew: bool = False
    ) -> Registration:
        state = self.settings.state_dir
        if self._key is None:
            self._key = await asyncio.to_thread(tls.load_or_create_key, state)
        key = await asyncio.to_thread(registration_key.current, state)
        if replace_rejected and key == self._registered_with:
            # A replay of this key would hand back the rejected node. A retry after a
            # failed attempt finds the new key already stored and sends it again.
            key = await asyncio.to_thread(registration_key.rotate, state)
        csr = await asyncio.to_thread(tls.build_csr, self._key, self.settings.endpoint_host)
        body: dict[str, Any] = {
            "join_token": self.settings.join_token,
            "endpoint": self.settings.endpoint,
            "region": self.settings.region,
            "capacity_bytes": self.settings.capacity_bytes,
            "csr": csr,
            "idempotency_key": key,
        }
        if self.settings.lat is not None and self.settings.lng is not None:
            body["lat"], body["lng"] = self.settings.lat, self.settings.lng
        identity = await asyncio.to_thread(
            aws_identity.signed_caller_identity, self._key.public_key()
        )
        if identity is not None:
            body["aws_identity"] = identity
        registration = await self.client.register(body)
        self._registered_with = key
        await asyncio.to_thread(
            tls.save_certificate,
            state,
            registration.certificate,
            registration.certificate_chain,
            registration.root_certificate,
        )
        self.registration = registration
        self._on_change(registration, anew)
        return registration

    async def leave(self) -> None:
        """This node was drained: a later start must register as a new node, never
        replay the drained one's registration."""
        async with self._lock:
            await asyncio.to_thread(registration_key.rotate, self.settings.state_dir)

    async def renew(self) -> None:
        """A new key and certificate through ``POST /nodes/{id}/renew``. A control
        plane that no longer knows the node (or has no renew route) gets a
        registration instead, which also issues a certificate."""
        async with self._lock:
            state = self.settings.state_dir
            key = await asyncio.to_thread(tls.new_key)
            csr = await asyncio.to_thread(tls.build_csr, key, self.settings.endpoint_host)
            try:
                issued = await self.client.renew(csr)
            except (Unauthorized, NotFound, Forbidden, Gone) as exc:
                if is_drained(exc):
                    # Out of the fleet: the heartbeat loop stops the edge.
                    log.warning("renewal refused: %s", exc.message)
                    return
                log.warning("renewal refused (%s); registering again", exc.message)
                await self._register_anew()
                self.renewals += 1
                return
            # Key first, then certificate: a crash in between leaves a mismatched
            # pair, and the next start registers again, which fixes it. Workers
            # reload only when told, after both are written.
            await asyncio.to_thread(tls.save_key, state, key)
            await asyncio.to_thread(
                tls.save_certificate,
                state,
                issued.certificate,
                issued.certificate_chain,
                issued.root_certificate,
            )
            self._key = key
            self.renewals += 1
            assert self.registration is not None
            self._on_change(self.registration, False)
            log.info("certificate renewed; new connections get it")

    async def renew_forever(self, stop: asyncio.Event) -> None:
        """Renew at 2/3 of the certificate's lifetime (or inside the margin); SIGHUP
        renews at once. A failed renewal is retried with backoff until it works."""
        failures = 0
        wanted = False  # a renewal is due (or was asked for) and has not worked yet
        retry_at = 0.0  # loop.time() before which a failed renewal is not retried
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            if self._renew_now.is_set():
                self._renew_now.clear()
                wanted, retry_at = True, 0.0
            if wanted:
                delay = retry_at - loop.time()
            else:
                try:
                    due = await asyncio.to_thread(
                        tls.stored_renewal_time,
                        self.settings.state_dir,
                        self.settings.cert_renew_margin_seconds,
                    )
                except (OSError, ValueError) as exc:
                    log.warning("cannot read the stored certificate (%s); renewing", exc)
                    due = dt.datetime.now(dt.UTC)
                delay = (due - dt.datetime.now(dt.UTC)).total_seconds()
            if delay > 0:
                await wait_any(stop, self._renew_now, timeout=delay)
                # Look again: a re-registration may have brought a new certificate.
                continue
            wanted = True
            try:
                await self.renew()
            except (FsnodeError, ValueError, OSError) as exc:
                failures += 1
                backoff = min(300.0, 2.0**failures) * random.uniform(0.5, 1.0)
                retry_at = loop.time() + backoff
                log.warning("certificate renewal failed (%s); retrying in %.0fs", exc, backoff)
            else:
                failures, wanted, retry_at = 0, False, 0.0

    async def register_until_answered(self, stop: asyncio.Event) -> Registration | None:
        """Retry registration with bounded, jittered backoff until it answers or we stop."""
        delay = 0.5
        while not stop.is_set():
            try:
                return await self.register()
            except (Unavailable, Conflict) as exc:
                if exc.details.get("reason") == IDEMPOTENCY_KEY_REUSED:
                    # Our key was used with other details (settings changed): only a
                    # new key can succeed.
                    await asyncio.to_thread(registration_key.rotate, self.settings.state_dir)
                # Else Conflict: a concurrent registration with our idempotency key.
                log.warning("control plane not ready (%s); retrying in %.1fs", exc.message, delay)
            except FsnodeError as exc:
                raise FatalStartError(f"registration refused: {exc.code}: {exc.message}") from exc
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay * random.uniform(0.8, 1.2))
            delay = min(10.0, delay * 2)
        return None
