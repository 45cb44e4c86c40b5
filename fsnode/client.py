"""A small Python client for fsnode (what the CLI is built on; usable from app backends).

Uploads go straight to S3 through presigned multipart parts, in parallel, and resume
(``fsnode.uploads``). Files are named by path (like S3 keys): uploading to a path a
live file has makes a new version of that file. Downloads use ``plan`` and fetch
chunks in parallel from replica edges (``fsnode.download``). Errors are
``fsnode.api.ApiError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from fsnode_core.chunks import DEFAULT_CHUNK_SIZE, part_size_for

from fsnode.api import ApiError, call_api, check_file_id, given, is_id
from fsnode.download import download_file
from fsnode.settings import ClientSettings
from fsnode.uploads import Progress, upload_file


class FsnodeClient:
    """Calls the control plane; moves bytes to S3 and from edges directly."""

    def __init__(
        self,
        settings: ClientSettings,
        session: requests.Session | None = None,
        timeout: float = 60.0,
        workers: int = 4,
        edge_timeout: float = 15.0,
    ) -> None:
        self.settings = settings
        self._session = session or requests.Session()
        self._timeout = timeout
        self._workers = workers
        self.edge_timeout = edge_timeout
        self._chunk_size: int | None = None

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def session(self) -> requests.Session:
        return self._session

    @property
    def timeout(self) -> float:
        """The timeout of a control plane call and of a part's PUT, in seconds."""
        return self._timeout

    @property
    def verify(self) -> str | bool:
        """What to pass as ``verify=`` for edges: the stack's CA, else the system store."""
        return self.settings.ca_cert or True

    # -- uploads ---------------------------------------------------------------

    # ``client.upload(path, ...)`` is ``upload_file(client, path, ...)``.
    upload = upload_file

    def part_size_for(self, size: int) -> int:
        """The part size of a file of ``size`` bytes, as the control plane lays it out
        (``fsnode_core.chunks``: whole chunks, grown so no file needs more than S3's
        10,000 parts)."""
        return part_size_for(self.chunk_size(), size)

    def chunk_size(self) -> int:
        """The control plane's chunk size (upload hashes must use it); cached."""
        if self._chunk_size is None:
            try:
                self._chunk_size = int(self.call("GET", "/web/config.json")["chunk_size"])
            except (ApiError, KeyError, ValueError, requests.RequestException):
                self._chunk_size = DEFAULT_CHUNK_SIZE  # an older control plane
        return self._chunk_size

    def import_object(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        etag: str | None = None,
        content_type: str | None = None,
        path: str | None = None,
        expires_in: int | None = None,
    ) -> dict[str, Any]:
        """Register an object already in S3 at ``path`` (default: its key), expiring
        ``expires_in`` seconds from now when given."""
        body = {
            "bucket": bucket,
            "key": key,
            **given(
                version_id=version_id,
                etag=etag,
                content_type=content_type,
                path=path,
                expires_in_seconds=expires_in,
            ),
        }
        return self.call("POST", "/files/import", json=body)

    # -- files -----------------------------------------------------------------

    def share(
        self,
        file_id: str,
        ttl_seconds: int,
        *,
        not_before: int | None = None,
        ip: str | None = None,
    ) -> dict[str, Any]:
        """Mint a share URL of the file (whatever its current version); optionally valid
        only from ``not_before`` (unix seconds), only for clients in the CIDR ``ip``."""
        file_id = check_file_id(file_id)
        body = {"ttl_seconds": ttl_seconds, **given(not_before=not_before, ip=ip)}
        return self.call("POST", f"/files/{file_id}/share", json=body)

    def share_folder(
        self,
        prefix: str,
        ttl_seconds: int,
        *,
        not_before: int | None = None,
        ip: str | None = None,
    ) -> dict[str, Any]:
        """Mint a folder share: ``share_url`` ends in ``/`` and a file below the folder
        is ``share_url`` + its relative path (HLS and DASH relative URLs work)."""
        body = {
            "prefix": prefix,
            "ttl_seconds": ttl_seconds,
            **given(not_before=not_before, ip=ip),
        }
        return self.call("POST", "/shares", json=body)

    def rehash(self, file_id: str) -> dict[str, Any]:
        """Have the control plane hash the file from S3 again and repair its hashes."""
        return self.call("POST", f"/files/{check_file_id(file_id)}/rehash")

    def get_file(self, file_id: str) -> dict[str, Any]:
        return self.call("GET", f"/files/{check_file_id(file_id)}")

    def set_expiry(
        self,
        file_id: str,
        *,
        expires_in: int | None = None,
        expires_at: int | None = None,
        never: bool = False,
    ) -> dict[str, Any]:
        """Give a file an expiry (``expires_in`` seconds from now, or at unix time
        ``expires_at``) or, with ``never``, clear it; returns the file record."""
        if (expires_in is not None) + (expires_at is not None) + never != 1:
            raise ValueError("give exactly one of expires_in, expires_at or never")
        body: dict[str, Any] = (
            {"expires_at": None}
            if never
            else {"expires_in_seconds": expires_in}
            if expires_in is not None
            else {"expires_at": expires_at}
        )
        return self.call("PATCH", f"/files/{check_file_id(file_id)}", json=body)

    def delete(self, file_id: str) -> dict[str, Any]:
        return self.call("DELETE", f"/files/{check_file_id(file_id)}")

    def plan(
        self, file_id: str, offset: int | None = None, length: int | None = None
    ) -> dict[str, Any]:
        """The download plan of a byte range, every page of it merged: per chunk its
        SHA-256 and replica edges (indexes into ``nodes``), one presigned S3 URL."""
        params = {k: v for k, v in {"offset": offset, "length": length}.items() if v is not None}
        path = f"/files/{check_file_id(file_id)}/plan"
        plan = self.call("GET", path, params=params or None)
        end = None if length is None else (offset or 0) + length
        while plan.get("next_offset") is not None:
            start = int(plan["next_offset"])
            more = {"offset": start, **({"length": end - start} if end is not None else {})}
            page = self.call("GET", path, params=more)
            if page["version"] != plan["version"]:
                raise ApiError(409, "conflict", "the file changed while it was planned")
            plan = {**page, "chunks": plan["chunks"] + page["chunks"]}
        return plan

    def list_files(self, prefix: str = "") -> list[dict[str, Any]]:
        """Every live file whose path starts with ``prefix``, in path order."""
        files: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"prefix": prefix, **({"next_token": token} if token else {})}
            page = self.call("GET", "/files", params=params)
            files.extend(page["files"])
            token = page.get("next_token")
            if not token:
                return files

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.node_listing()["nodes"])

    def node_listing(self) -> dict[str, Any]:
        """``GET /nodes``: the nodes and ``edge_domain`` (null without public names)."""
        return self.call("GET", "/nodes")

    def cluster(self) -> dict[str, Any]:
        return self.call("GET", "/cluster")

    def create_key(self, name: str, role: str = "user") -> dict[str, Any]:
        """A new API key (an admin key may call this); its ``key`` is shown only here."""
        return self.call("POST", "/keys", json={"name": name, "role": role})

    def list_keys(self) -> list[dict[str, Any]]:
        """Every API key (ids, names, roles, revocation times; never the keys)."""
        keys: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self.call("GET", "/keys", params={"next_token": token} if token else None)
            keys.extend(page["keys"])
            token = page.get("next_token")
            if not token:
                return keys

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        """Revoke an API key (refused by the API within the authorizer's cache time)."""
        if not is_id(key_id):
            raise ApiError(400, "invalid_input", f"not a key id (32 lowercase hex): {key_id!r}")
        return self.call("DELETE", f"/keys/{key_id}")

    def download(self, file_id: str, out: Path, *, progress: Progress | None = None) -> Any:
        """Fetch a file by id through its plan; see ``fsnode.download.download_file``."""
        return download_file(self, file_id, out, progress=progress)

    # -- plumbing --------------------------------------------------------------

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One control plane call (``requests`` keyword arguments); ``ApiError`` on error."""
        return call_api(self._session, self.settings, self._timeout, method, path, **kwargs)
