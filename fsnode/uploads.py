"""Uploads: presigned multipart parts straight to S3, in parallel, resumable.

The parts already sent are recorded in a state file under ``FSNODE_HOME/uploads``
(the control plane cannot list an upload's parts, so the client trusts its own record).
Each part's URL signs the part's SHA-256 (``x-amz-checksum-sha256``, sent as the header
the control plane names): S3 refuses a part whose bytes changed since they were hashed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import requests

from fsnode import state
from fsnode.api import ApiError, check_file_id, given, is_id
from fsnode.hashing import file_hashes
from fsnode.settings import ClientSettings

Progress = Callable[[int], None]

# A resumed upload asks for fresh part URLs, so it may resume for a day (S3's shortest
# lifecycle rule for unfinished uploads); past that it starts over.
_RESUME_SECONDS = 24 * 3600


class UploadApi(Protocol):
    """What an upload needs from the control plane's client (``FsnodeClient`` is one)."""

    settings: ClientSettings

    @property
    def session(self) -> requests.Session: ...

    @property
    def timeout(self) -> float: ...

    @property
    def workers(self) -> int: ...

    def chunk_size(self) -> int: ...

    def part_size_for(self, size: int) -> int: ...

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]: ...


class UploadInterrupted(Exception):
    """Raised by the ``stop_after_parts`` hook: the upload stopped, its state is kept."""


def upload_file(
    client: UploadApi,
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
    target = {"file_id": check_file_id(file_id)} if file_id else {"path": remote_path or path.name}
    # Keyed by control plane and target too: a record is useless against another.
    record_path = state.state_path(
        "uploads", f"{client.settings.api_url} {path.resolve()} {sorted(target.items())}"
    )
    saved = state.load(record_path)
    part_size = client.part_size_for(stat.st_size)
    hashes, part_hashes = file_hashes(path, client.chunk_size(), part_size)
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
        _cancel(client, saved.get("upload") or {})
        saved = None
    pages: _PartPages | None = None
    if saved is not None:
        pages = _PartPages(client, saved["upload"])
        recorded = saved.get("etags") or {}
        missing = next(
            (n for n in range(1, int(saved["upload"]["part_count"]) + 1) if str(n) not in recorded),
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
            **given(content_type=content_type, expires_in_seconds=expires_in),
        }
        init = client.call("POST", "/files", json=body)
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
        pages = _PartPages(client, upload, init)
    assert pages is not None
    upload = saved["upload"]
    etags: dict[str, str] = dict(saved["etags"])
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
        etag = _put_part(client, path, part)
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
        with ThreadPoolExecutor(max_workers=client.workers) as pool:
            for future in [pool.submit(send, number) for number in todo]:
                future.result()
    finally:
        with lock:
            save()
    parts = [{"part_number": n, "etag": etags[str(n)]} for n in range(1, count + 1)]
    try:
        record = client.call("POST", f"/files/{upload['file_id']}/complete", json={"parts": parts})
    except ApiError as exc:
        if exc.status in (400, 404):
            # The upload is gone or a recorded part is not in S3: never resume it again.
            state.remove(record_path)
        raise
    state.remove(record_path)
    return {**record, "parts_sent": sent, "parts_resumed": resumed}


def _cancel(client: UploadApi, upload: dict[str, Any]) -> None:
    """Cancel an upload this client started and will not finish (gone: fine)."""
    if not is_id(str(upload.get("file_id", ""))) or not upload.get("upload_id"):
        return
    try:
        client.call(
            "DELETE",
            f"/files/{upload['file_id']}/upload",
            params={"upload_id": upload["upload_id"]},
        )
    except ApiError as exc:
        if exc.status not in (404, 409):  # finished, or already replaced
            raise


def _put_part(client: UploadApi, path: Path, part: dict[str, Any]) -> str:
    with path.open("rb") as handle:
        handle.seek(int(part["offset"]))
        data = handle.read(int(part["length"]))
    # The URL signs these headers (the part's checksum): S3 refuses the PUT without them.
    headers = dict(part.get("headers") or {})
    response = client.session.put(part["url"], data=data, headers=headers, timeout=client.timeout)
    if response.status_code != 200:
        code = "bad_digest" if "BadDigest" in response.text else "upload_part_failed"
        raise ApiError(response.status_code, code, response.text[:500])
    return str(response.headers["ETag"])


def _resumable(
    saved: dict[str, Any] | None, fingerprint: dict[str, Any], target: dict[str, str]
) -> bool:
    """A saved upload resumes only for the same bytes and target, and for a day."""
    if saved is None or "upload" not in saved:
        return False
    same = all(saved.get(k) == v for k, v in fingerprint.items())
    fresh = time.time() - float(saved.get("started", 0)) < _RESUME_SECONDS
    return same and fresh and saved.get("target") == target


def _hashes_digest(chunks: list[str], parts: list[str]) -> str:
    return hashlib.sha256(f"{','.join(chunks)};{','.join(parts)}".encode()).hexdigest()


class _PartPages:
    """An upload's part URLs, fetched a page at a time as parts need them (the
    control plane signs them fresh, an hour each); shared by the sending threads."""

    def __init__(
        self, client: UploadApi, upload: dict[str, Any], first_page: dict[str, Any] | None = None
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
                    self._client.call("GET", f"/files/{file_id}/parts", params={"first": number})
                )
            return self._parts[number]

    def _add(self, page: dict[str, Any]) -> None:
        if page.get("upload_id") != self._upload["upload_id"]:
            raise ApiError(409, "upload_replaced", "the upload was replaced by another")
        for part in page["parts"]:
            self._parts[int(part["part_number"])] = part
