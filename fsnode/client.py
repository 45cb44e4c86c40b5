"""A small Python client for the fsnode control plane (what the CLI is built on)."""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from fsnode_core.chunks import DEFAULT_CHUNK_SIZE

from fsnode.settings import ClientSettings

Progress = Callable[[int], None]


class ApiError(Exception):
    """The control plane (or S3) answered with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message


class FsnodeClient:
    """Calls the control plane; uploads go straight to S3 through presigned parts."""

    def __init__(
        self,
        settings: ClientSettings,
        session: requests.Session | None = None,
        timeout: float = 60.0,
        workers: int = 4,
    ) -> None:
        self.settings = settings
        self._session = session or requests.Session()
        self._timeout = timeout
        self._workers = workers

    # -- files -----------------------------------------------------------------

    def upload(
        self,
        path: Path,
        *,
        content_type: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Upload ``path`` in parallel presigned parts; returns the file record."""
        size = path.stat().st_size
        body = {
            "name": path.name,
            "size": size,
            "content_type": content_type or _guess_type(path),
            "chunk_sha256": chunk_hashes(path, chunk_size),
        }
        init = self._call("POST", "/files", json=body)
        if int(init["chunk_size"]) != chunk_size:
            # The control plane chunks differently: hash again with its chunk size.
            body["chunk_sha256"] = chunk_hashes(path, int(init["chunk_size"]))
            init = self._call("POST", "/files", json=body)
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            etags = list(pool.map(lambda part: self._put_part(path, part, progress), init["parts"]))
        parts = [
            {"part_number": part["part_number"], "etag": etag}
            for part, etag in zip(init["parts"], etags, strict=True)
        ]
        return self._call("POST", f"/files/{init['file_id']}/complete", json={"parts": parts})

    def share(self, file_id: str, ttl_seconds: int) -> dict[str, Any]:
        return self._call("POST", f"/files/{file_id}/share", json={"ttl_seconds": ttl_seconds})

    def get_file(self, file_id: str) -> dict[str, Any]:
        return self._call("GET", f"/files/{file_id}")

    def list_files(self) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._call("GET", "/files", params={"next_token": token} if token else None)
            files.extend(page["files"])
            token = page.get("next_token")
            if not token:
                return files

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/nodes")["nodes"])

    # -- plumbing --------------------------------------------------------------

    def _put_part(self, path: Path, part: dict[str, Any], progress: Progress | None) -> str:
        with path.open("rb") as handle:
            handle.seek(int(part["offset"]))
            data = handle.read(int(part["length"]))
        response = self._session.put(part["url"], data=data, timeout=self._timeout)
        if response.status_code != 200:
            raise ApiError(response.status_code, "upload_part_failed", response.text[:500])
        if progress is not None:
            progress(len(data))
        return str(response.headers["ETag"])

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"x-api-key": self.settings.api_key} if self.settings.api_key else {}
        response = self._session.request(
            method,
            f"{self.settings.api_url}{path}",
            headers=headers,
            timeout=self._timeout,
            **kwargs,
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not response.ok:
            error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
            raise ApiError(
                response.status_code,
                str(error.get("code", "http_error")),
                str(error.get("message", response.text[:500] or response.reason)),
            )
        if not isinstance(body, dict):
            raise ApiError(response.status_code, "bad_response", "the answer was not JSON")
        return body


def chunk_hashes(path: Path, chunk_size: int) -> list[str]:
    """SHA-256 of every chunk of ``path``, in order."""
    hashes: list[str] = []
    with path.open("rb") as handle:
        while block := handle.read(chunk_size):
            hashes.append(hashlib.sha256(block).hexdigest())
    return hashes


def _guess_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(os.fspath(path))
    return guessed or "application/octet-stream"
