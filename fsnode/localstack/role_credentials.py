"""Run each in-process function with its own role's credentials, as Lambda does.

In AWS every function is its own process with its role's credentials. The local stack
runs several functions in one process (the Step Functions Lambdas inside moto's
server; the API handler, the authorizer and prune in the API server), so boto3's
default session gets credentials that sign as the role of whichever function the
current context runs (``running_as``), and as the process's own otherwise. Threads a
function starts (a ``ThreadPoolExecutor``) run as its role too.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError

from fsnode.localstack.moto_patches import Patches

# The API server's functions' credentials, by function name: ``{name: {access_key_id,
# secret_access_key, session_token}}`` (JSON), given by the local stack.
ROLES_ENV = "FSNODE_LOCAL_FUNCTION_CREDENTIALS"

_current: contextvars.ContextVar[Credentials | None] = contextvars.ContextVar(
    "fsnode_role_credentials", default=None
)
_patches = Patches()


class ContextCredentials(Credentials):
    """Sign as the current context's role, else as ``fallback`` (else refuse)."""

    def __init__(self, fallback: Credentials | None) -> None:
        self._fallback = fallback
        super().__init__("unused", "unused", None, method="fsnode-local-role")

    def _normalize(self) -> None:
        pass  # the values are the context's, read when a request is signed

    def _active(self) -> Credentials:
        credentials = _current.get() or self._fallback
        if credentials is None:
            raise NoCredentialsError()
        return credentials

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        return self._active().get_frozen_credentials()

    @property
    def access_key(self) -> str:
        return str(self._active().access_key)

    @access_key.setter
    def access_key(self, value: str) -> None:
        pass  # set by Credentials.__init__ only

    @property
    def secret_key(self) -> str:
        return str(self._active().secret_key)

    @secret_key.setter
    def secret_key(self, value: str) -> None:
        pass

    @property
    def token(self) -> str | None:
        return self._active().token

    @token.setter
    def token(self, value: str | None) -> None:
        pass


def install(fallback: Credentials | None = None) -> None:
    """Give boto3's default session context credentials (once per process)."""
    if _patches.active:
        return
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    _patches.set(session._session, "_credentials", ContextCredentials(fallback))
    submit = concurrent.futures.ThreadPoolExecutor.submit

    def submit_in_context(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    _patches.set(concurrent.futures.ThreadPoolExecutor, "submit", submit_in_context)


@contextmanager
def running_as(credentials: Credentials | None) -> Iterator[None]:
    """Sign every AWS call in this context (and threads it submits) with ``credentials``
    (None: leave the context as it is)."""
    if credentials is None:
        yield
        return
    token = _current.set(credentials)
    try:
        yield
    finally:
        _current.reset(token)


def from_env() -> dict[str, Credentials]:
    """The function credentials the local stack gave this process (``ROLES_ENV``)."""
    raw = os.environ.get(ROLES_ENV)
    if not raw:
        return {}
    return {
        name: Credentials(
            value["access_key_id"], value["secret_access_key"], value.get("session_token")
        )
        for name, value in json.loads(raw).items()
    }
