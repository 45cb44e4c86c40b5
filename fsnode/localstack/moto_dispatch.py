"""A faster request dispatch for the local stack's moto server: each backend looked up
once per host name.

moto's server finds the backend of every request by host name: it lists moto's package
directory (``os.listdir`` and a ``stat`` for each of about 200 entries) and then tries
each backend's URL patterns in turn, all under one process-wide lock. Measured under a
cold HLS start (py-spy on the server), that took about 30% of the server's CPU, and the
lock put every concurrent request in one line: an emulator cost that made a client
issuing parallel S3 requests (an edge) pay more per request than one issuing them one
at a time. The answer depends on the host name only, so it is kept per name; what each
request is checked and answered with does not change.
"""

from __future__ import annotations

from typing import Any

from fsnode.localstack.moto_patches import Patches

# Host names are service-region names moto derives (and the odd Host header): few.
MAX_HOSTS = 1024

_patches = Patches()


def install() -> None:
    """Patch moto's dispatcher in this process (idempotent)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if _patches.active:
        return
    original = DomainDispatcherApplication.get_backend_for_host
    known: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        try:
            return known[host]
        except KeyError:
            pass
        backend = original(self, host)
        if len(known) < MAX_HOSTS:
            known[host] = backend
        return backend

    _patches.set(DomainDispatcherApplication, "get_backend_for_host", get_backend_for_host)


def uninstall() -> None:
    _patches.undo()
