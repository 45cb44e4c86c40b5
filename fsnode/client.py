"""A small Python client for fsnode (what the CLI is built on; usable from app backends).

Uploads go straight to S3 through presigned multipart parts, in parallel, and resume:
the parts already sent are recorded in a state file under ``FSNODE_HOME/uploads``
(the control plane cannot list an upload's parts, so the client trusts its own record).
Each part's URL signs the part's SHA-256 (``x-amz-checksum-sha256``, sent as the header
the control plane names): S3 refuses a part whose bytes changed since they were hashed.
Files are named by path (like S3 keys): uploading to a path a live file has makes a
new version of that file. Downloads use ``plan`` and fetch chunks in parallel from
replica edges; see ``fsnode.download``.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from fsnode_core.chunks import DEFAULT_CHUNK_SIZE, part_size_for
from fsnode_core.published import chunks_digest

from fsnode import state
from fsnode.download import download_file
from fsnode.settings import ClientSettings

Progress = Callable[[int], None]

# A resumed upload asks for fresh part URLs, so it may resume for a day (S3's shortest
# lifecycle rule for unfinished uploads); past that it starts over.
_RESUME_SECONDS = 24 * 3600
_FILE_ID = re.compile(r"[0-9a-f]{32}")


class ApiError(Exception):
    """The control plane (or S3, or an edge) answered with an error."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


class UploadInterrupted(Exception):
    """Raised by the ``stop_after_parts`` hook: the upload stopped, its state is kept."""


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
    def verify(self) -> str | bool:
        """What to pass as ``verify=`` for edges: the stack's CA, else the system store."""
        return self.settings.ca_cert or True

    # -- uploads ---------------------------------------------------------------

    def upload(
        self,
        path: Path,
        *,
        remote_path: str | None = None,
        content_type: str | None = None,
        file_id: str | None = None,
        progress: Progress | None = None,
        resume: bool = True,
        stop_after_parts: int | None = None,
        expires_in: int | None = None,
    ) -> dict[str, Any]:
        """Upload ``path`` to ``remote_path`` (default: its file name), or as a new
        version of ``file_id``; returns the file record. A live file at the path gets a
        new version. Without ``content_type`` the control plane names it by extension.

        ``expires_in`` (seconds) gives the file an expiry, set when the upload completes;
        without it a new version keeps the file's expiry. A resumed upload keeps the
        expiry its start asked for.

        The record also carries ``parts_sent`` and ``parts_resumed``. ``stop_after_parts``
        is a hook for tests: raise UploadInterrupted once that many parts are sent.
        """
        path = Path(path)
        stat = path.stat()
        target = (
            {"file_id": check_file_id(file_id)} if file_id else {"path": remote_path or path.name}
        )
        # Keyed by control plane and target too: a record is useless against another.
        record_path = state.state_path(
            "uploads", f"{self.settings.api_url} {path.resolve()} {sorted(target.items())}"
        )
        saved = state.load(record_path)
        part_size = self.part_size_for(stat.st_size)
        hashes, part_hashes = file_hashes(path, self.chunk_size(), part_size)
        # A digest stands for the hash lists: a 100 GiB file's are megabytes, and the
        # record is rewritten as parts go.
        fingerprint = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "hashes": _hashes_digest(hashes, part_hashes),
        }
        if saved is not None and (not resume or not _resumable(saved, fingerprint, target)):
            # Its part URLs may still live: as one upload per file goes, it would hold
            # the file (and the path) for their hour. It is ours: cancel it.
            self._cancel(saved.get("upload") or {})
            saved = None
        pages: _PartPages | None = None
        if saved is not None:
            pages = _PartPages(self, saved["upload"])
            etags = saved.get("etags") or {}
            missing = next(
                (
                    n
                    for n in range(1, int(saved["upload"]["part_count"]) + 1)
                    if str(n) not in etags
                ),
                None,
            )
            try:
                if missing is not None:
                    pages.get(missing)  # fresh URLs, and proof the upload is still open
            except ApiError as exc:
                if exc.status not in (404, 409):
                    raise
                saved = None  # swept, replaced or completed elsewhere: start over
        if saved is None:
            body = {
                **target,
                "size": stat.st_size,
                "chunk_sha256": hashes,
                "part_sha256": part_hashes,
                **_given(content_type=content_type, expires_in_seconds=expires_in),
            }
            init = self._call("POST", "/files", json=body)
            upload = {
                name: init[name]
                for name in ("file_id", "version", "upload_id", "part_count", "part_size")
            }
            saved = {
                **fingerprint,
                "target": target,
                "upload": upload,
                "etags": {},
                "started": time.time(),
            }
            state.save(record_path, saved)
            pages = _PartPages(self, upload, init)
        assert pages is not None
        upload = saved["upload"]
        etags = dict(saved["etags"])
        resumed = len(etags)
        count = int(upload["part_count"])
        step = int(upload["part_size"])
        if progress is not None:
            progress(sum(min(step, stat.st_size - (int(n) - 1) * step) for n in etags))
        lock = threading.Lock()
        sent = 0
        last_save = time.monotonic()

        def save() -> None:
            state.save(record_path, {**saved, "etags": etags})

        def send(number: int) -> None:
            nonlocal sent, last_save
            with lock:
                if stop_after_parts is not None and sent >= stop_after_parts:
                    raise UploadInterrupted(f"stopped after {sent} parts (test hook)")
            part = pages.get(number)
            etag = self._put_part(path, part)
            with lock:
                etags[str(number)] = etag
                sent += 1
                # At most twice a second: a 10,000-part upload must not rewrite its
                # record 10,000 times. What a crash loses is sent again on resume.
                if time.monotonic() - last_save >= 0.5:
                    save()
                    last_save = time.monotonic()
            if progress is not None:
                progress(int(part["length"]))

        todo = [n for n in range(1, count + 1) if str(n) not in etags]
        try:
            with ThreadPoolExecutor(max_workers=self._workers) as pool:
                for future in [pool.submit(send, number) for number in todo]:
                    future.result()
        finally:
            with lock:
                save()
        parts = [{"part_number": n, "etag": etags[str(n)]} for n in range(1, count + 1)]
        try:
            record = self._call(
                "POST", f"/files/{upload['file_id']}/complete", json={"parts": parts}
            )
        except ApiError as exc:
            if exc.status in (400, 404):
                # The upload is gone or a recorded part is not in S3: never resume it again.
                state.remove(record_path)
            raise
        state.remove(record_path)
        return {**record, "parts_sent": sent, "parts_resumed": resumed}

    def _cancel(self, upload: dict[str, Any]) -> None:
        """Cancel an upload this client started and will not finish (gone: fine)."""
        if not _FILE_ID.fullmatch(str(upload.get("file_id", ""))) or not upload.get("upload_id"):
            return
        try:
            self._call(
                "DELETE",
                f"/files/{upload['file_id']}/upload",
                params={"upload_id": upload["upload_id"]},
            )
        except ApiError as exc:
            if exc.status not in (404, 409):  # finished, or already replaced
                raise

    def part_size_for(self, size: int) -> int:
        """The part size of a file of ``size`` bytes, as the control plane lays it out
        (``fsnode_core.chunks``: whole chunks, grown so no file needs more than S3's
        10,000 parts)."""
        return part_size_for(self.chunk_size(), size)

    def chunk_size(self) -> int:
        """The control plane's chunk size (upload hashes must use it); cached."""
        if self._chunk_size is None:
            try:
                self._chunk_size = int(self._call("GET", "/web/config.json")["chunk_size"])
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
            **_given(
                version_id=version_id,
                etag=etag,
                content_type=content_type,
                path=path,
                expires_in_seconds=expires_in,
            ),
        }
        return self._call("POST", "/files/import", json=body)

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
        body = {"ttl_seconds": ttl_seconds, **_given(not_before=not_before, ip=ip)}
        return self._call("POST", f"/files/{file_id}/share", json=body)

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
            **_given(not_before=not_before, ip=ip),
        }
        return self._call("POST", "/shares", json=body)

    def rehash(self, file_id: str) -> dict[str, Any]:
        """Have the control plane hash the file from S3 again and repair its hashes."""
        return self._call("POST", f"/files/{check_file_id(file_id)}/rehash")

    def get_file(self, file_id: str) -> dict[str, Any]:
        return self._call("GET", f"/files/{check_file_id(file_id)}")

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
        return self._call("PATCH", f"/files/{check_file_id(file_id)}", json=body)

    def delete(self, file_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/files/{check_file_id(file_id)}")

    def plan(
        self, file_id: str, offset: int | None = None, length: int | None = None
    ) -> dict[str, Any]:
        """The download plan of a byte range, every page of it merged: per chunk its
        SHA-256 and replica edges (indexes into ``nodes``), one presigned S3 URL."""
        params = {k: v for k, v in {"offset": offset, "length": length}.items() if v is not None}
        path = f"/files/{check_file_id(file_id)}/plan"
        plan = self._call("GET", path, params=params or None)
        end = None if length is None else (offset or 0) + length
        while plan.get("next_offset") is not None:
            start = int(plan["next_offset"])
            more = {"offset": start, **({"length": end - start} if end is not None else {})}
            page = self._call("GET", path, params=more)
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
            page = self._call("GET", "/files", params=params)
            files.extend(page["files"])
            token = page.get("next_token")
            if not token:
                return files

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.node_listing()["nodes"])

    def node_listing(self) -> dict[str, Any]:
        """``GET /nodes``: the nodes and ``edge_domain`` (null without public names)."""
        return self._call("GET", "/nodes")

    def cluster(self) -> dict[str, Any]:
        return self._call("GET", "/cluster")

    def create_key(self, name: str, role: str = "user") -> dict[str, Any]:
        """A new API key (an admin key may call this); its ``key`` is shown only here."""
        return self._call("POST", "/keys", json={"name": name, "role": role})

    def list_keys(self) -> list[dict[str, Any]]:
        """Every API key (ids, names, roles, revocation times; never the keys)."""
        keys: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._call("GET", "/keys", params={"next_token": token} if token else None)
            keys.extend(page["keys"])
            token = page.get("next_token")
            if not token:
                return keys

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        """Revoke an API key (refused by the API within the authorizer's cache time)."""
        if not _FILE_ID.fullmatch(key_id):
            raise ApiError(400, "invalid_input", f"not a key id (32 lowercase hex): {key_id!r}")
        return self._call("DELETE", f"/keys/{key_id}")

    def download(self, file_id: str, out: Path, *, progress: Progress | None = None) -> Any:
        """Fetch a file by id through its plan; see ``fsnode.download.download_file``."""
        return download_file(self, file_id, out, progress=progress)

    # -- plumbing --------------------------------------------------------------

    def _put_part(self, path: Path, part: dict[str, Any]) -> str:
        with path.open("rb") as handle:
            handle.seek(int(part["offset"]))
            data = handle.read(int(part["length"]))
        # The URL signs these headers (the part's checksum): S3 refuses the PUT without them.
        headers = dict(part.get("headers") or {})
        response = self._session.put(part["url"], data=data, headers=headers, timeout=self._timeout)
        if response.status_code != 200:
            code = "bad_digest" if "BadDigest" in response.text else "upload_part_failed"
            raise ApiError(response.status_code, code, response.text[:500])
        return str(response.headers["ETag"])

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        # The same header for the local stack and AWS: API Gateway's authorizer reads it.
        headers = (
            {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}
        )
        try:
            response = self._session.request(
                method,
                f"{self.settings.api_url}{path}",
                headers=headers,
                timeout=self._timeout,
                **kwargs,
            )
        except requests.RequestException as exc:
            message = f"cannot reach {self.settings.api_url}: {exc}"
            raise ApiError(0, "unreachable", message) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not response.ok:
            error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
            if not error and isinstance(body, dict) and "message" in body:
                # API Gateway's (and chalice local's) own answer, e.g. for a route it lacks.
                error = {"code": "http_error", "message": f"{body['message']} ({method} {path})"}
            raise ApiError(
                response.status_code,
                str(error.get("code", "http_error")),
                str(error.get("message", response.text[:500] or response.reason)),
                error.get("details") if isinstance(error.get("details"), dict) else None,
            )
        if not isinstance(body, dict):
            raise ApiError(response.status_code, "bad_response", "the answer was not JSON")
        return body


def check_file_id(file_id: str) -> str:
    """Refuse a malformed id before it reaches a URL path (``../`` would change the route)."""
    if not _FILE_ID.fullmatch(file_id):
        raise ApiError(400, "invalid_input", f"not a file id (32 lowercase hex): {file_id!r}")
    return file_id


def _resumable(
    saved: dict[str, Any] | None, fingerprint: dict[str, Any], target: dict[str, str]
) -> bool:
    """A saved upload resumes only for the same bytes and target, and for a day."""
    if saved is None or "upload" not in saved:
        return False
    same = all(saved.get(k) == v for k, v in fingerprint.items())
    fresh = time.time() - float(saved.get("started", 0)) < _RESUME_SECONDS
    return same and fresh and saved.get("target") == target


class _PartPages:
    """An upload's part URLs, fetched a page at a time as parts need them (the
    control plane signs them fresh, an hour each); shared by the sending threads."""

    def __init__(
        self, client: FsnodeClient, upload: dict[str, Any], first_page: dict[str, Any] | None = None
    ) -> None:
        self._client = client
        self._upload = upload
        self._parts: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        if first_page is not None:
            self._add(first_page)

    def get(self, number: int) -> dict[str, Any]:
        with self._lock:
            if number not in self._parts:
                file_id = check_file_id(self._upload["file_id"])
                self._add(
                    self._client._call("GET", f"/files/{file_id}/parts", params={"first": number})
                )
            return self._parts[number]

    def _add(self, page: dict[str, Any]) -> None:
        if page.get("upload_id") != self._upload["upload_id"]:
            raise ApiError(409, "upload_replaced", "the upload was replaced by another")
        for part in page["parts"]:
            self._parts[int(part["part_number"])] = part


def _given(**fields: Any) -> dict[str, Any]:
    """The optional fields of a request body that were given (not None)."""
    return {name: value for name, value in fields.items() if value is not None}


def _hashes_digest(chunks: list[str], parts: list[str]) -> str:
    return hashlib.sha256(f"{','.join(chunks)};{','.join(parts)}".encode()).hexdigest()


def file_hashes(path: Path, chunk_size: int, part_size: int) -> tuple[list[str], list[str]]:
    """SHA-256 of every chunk and of every multipart part of ``path``, in one read.

    Parts are whole chunks (``part_size`` is a multiple of ``chunk_size``); an empty
    file is no chunks and one empty part, as the control plane lays it out.
    """
    if chunk_size <= 0 or part_size % chunk_size:
        raise ValueError(f"part size {part_size} is not a multiple of chunk size {chunk_size}")
    chunks: list[str] = []
    parts: list[str] = []
    part = hashlib.sha256()
    in_part = 0
    with path.open("rb") as handle:
        while block := handle.read(chunk_size):
            chunks.append(hashlib.sha256(block).hexdigest())
            part.update(block)
            in_part += len(block)
            if in_part == part_size:
                parts.append(part.hexdigest())
                part, in_part = hashlib.sha256(), 0
    if in_part or not parts:
        parts.append(part.hexdigest())
    return chunks, parts


def content_digest(path: Path, chunk_size: int) -> str:
    """``chunks_sha256`` of a local file: what a listing's record says of its content
    (SHA-256 over the raw chunk digests at ``chunk_size``)."""
    with path.open("rb") as handle:
        return chunks_digest(
            [
                hashlib.sha256(block).hexdigest()
                for block in iter(lambda: handle.read(chunk_size), b"")
            ]
        )
