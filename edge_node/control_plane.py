"""The edge's client for the control plane's node routes (docs/PROTOCOL.md).

Answers that carry the shared error shape are turned back into domain errors, so
callers decide on ``Unauthorized``/``NotFound``/``Gone`` (re-register; ``Gone`` with
reason ``node_drained``: leave) or ``Unavailable`` (keep serving from cache, try later)
without looking at HTTP.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
from fsnode_core.errors import (
    NODE_DRAINED_REASON,
    Conflict,
    Forbidden,
    FsnodeError,
    Gone,
    InvalidInput,
    NotFound,
    Unauthorized,
    Unavailable,
)

_BY_STATUS: dict[int, type[FsnodeError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
}


@dataclass(frozen=True, slots=True)
class Registration:
    """What ``POST /nodes/register`` answers."""

    node_id: str
    credential: str
    certificate: str
    certificate_chain: str
    root_certificate: str
    share_public_keys: dict[str, str]
    heartbeat_interval: float
    chunk_size: int
    bucket: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Registration:
        try:
            return cls(
                node_id=str(data["node_id"]),
                credential=str(data["credential"]),
                certificate=str(data["certificate"]),
                certificate_chain=str(data.get("certificate_chain") or ""),
                root_certificate=str(data.get("root_certificate") or ""),
                share_public_keys={str(k): str(v) for k, v in data["share_public_keys"].items()},
                heartbeat_interval=float(data.get("heartbeat_interval") or 15),
                chunk_size=int(data.get("chunk_size") or 0),
                bucket=str(data.get("bucket") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise Unavailable("the control plane sent a malformed registration") from exc


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """What ``POST /nodes/{node_id}/renew`` answers."""

    certificate: str
    certificate_chain: str
    root_certificate: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IssuedCertificate:
        try:
            return cls(
                certificate=str(data["certificate"]),
                certificate_chain=str(data.get("certificate_chain") or ""),
                root_certificate=str(data.get("root_certificate") or ""),
            )
        except (KeyError, TypeError) as exc:
            raise Unavailable("the control plane sent a malformed certificate") from exc


class ControlPlaneClient:
    """Async calls to the node routes, with a bearer credential once registered."""

    def __init__(
        self,
        api_url: str,
        *,
        ca_bundle: str | None = None,
        timeout_seconds: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._base = api_url.rstrip("/")
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        )
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, connect=5)
        self._session = session
        self._owns_session = session is None
        self.node_id: str | None = None
        self._credential: str | None = None

    def set_identity(self, node_id: str, credential: str) -> None:
        self.node_id = node_id
        self._credential = credential

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def register(self, body: dict[str, Any]) -> Registration:
        answer = await self._call("POST", "/nodes/register", body, auth=False)
        registration = Registration.from_dict(answer)
        self.set_identity(registration.node_id, registration.credential)
        return registration

    async def renew(self, csr: str) -> IssuedCertificate:
        answer = await self._call("POST", f"/nodes/{self._node()}/renew", {"csr": csr})
        return IssuedCertificate.from_dict(answer)

    async def public_certificate(self) -> dict[str, Any]:
        """The fleet's public certificate and key (issue 19), over this node's channel."""
        return await self._call("GET", f"/nodes/{self._node()}/public-certificate")

    async def heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"/nodes/{self._node()}/heartbeat", body)

    async def report_work(self, work_id: str, result: dict[str, Any]) -> None:
        # Work ids come from the control plane but still end up in a URL path.
        if not work_id or any(c in work_id for c in "/?#%\\") or work_id in {".", ".."}:
            raise InvalidInput("work id is not path-safe", work_id=work_id[:80])
        await self._call("POST", f"/nodes/{self._node()}/work/{work_id}", result)

    def _node(self) -> str:
        if self.node_id is None:
            raise Unauthorized("the node is not registered yet")
        return self.node_id

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, auth: bool = True
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if auth and self._credential:
            headers["Authorization"] = f"Bearer {self._credential}"
        try:
            async with self._http().request(
                method, self._base + path, json=body, headers=headers, ssl=self._ssl
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(f"the control plane is unreachable: {exc!r}") from exc
        data = _json(text)
        if 200 <= status < 300:
            if not isinstance(data, dict):
                raise Unavailable("the control plane answered with something other than JSON")
            return data
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        message = str(message or f"control plane answered {status} to {method} {path}")
        error_class = _BY_STATUS.get(status, Unavailable)
        details = error.get("details") if isinstance(error, dict) else None
        reason = details.get("reason") if isinstance(details, dict) else None
        if reason is not None:  # what the caller may act on (IDEMPOTENCY_KEY_REUSED)
            raise error_class(message, status=status, reason=str(reason))
        raise error_class(message, status=status)


def is_drained(exc: FsnodeError) -> bool:
    """The control plane's word that this node was drained: it leaves, for good."""
    return isinstance(exc, Gone) and exc.details.get("reason") == NODE_DRAINED_REASON


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
