"""Downloads: chunks in parallel from replica edges, failover, SHA-256 checks, resume.

Bytes land in ``OUT.part`` at their offsets; ``OUT.part.json`` lists the chunks already
written and verified, so a second run fetches only the rest. The ``.part`` file becomes
``OUT`` only when every chunk is in.

A share URL carries no chunk hashes: every piece after the first is asked for with
``If-Match`` the first answer's ``ETag`` (and its ``ETag`` checked), so a file replaced
mid-download is an error, never a file that mixes two versions. A folder share
(``.../t/TOKEN/FOLDER/``) is listed, then each file fetched the same way.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin, urlparse

import requests
from fsnode_core.paths import is_valid_path, url_path

from fsnode import state

Progress = Callable[[int], None]
SHARE_PIECE = 4 * 1024 * 1024
_SHARE_ATTEMPTS = 3


class PlanSource(Protocol):
    """What a download needs from the control plane's client (``FsnodeClient`` is one):
    the plan, and how to reach the edges."""

    @property
    def session(self) -> requests.Session: ...

    @property
    def verify(self) -> str | bool: ...

    @property
    def workers(self) -> int: ...

    edge_timeout: float

    def plan(self, file_id: str) -> dict[str, Any]: ...


class DownloadError(Exception):
    """A chunk could not be fetched from any source, or the file changed mid-way."""


@dataclass(frozen=True, slots=True)
class Source:
    """One place a chunk can come from: an edge (``node_id``) or S3 (``node_id='s3'``)."""

    node_id: str
    url: str


@dataclass(frozen=True, slots=True)
class Piece:
    index: int
    offset: int
    length: int
    sha256: str | None
    sources: tuple[Source, ...]
    # The ETag every answer must carry (sent as If-Match): a share's first answer's.
    etag: str | None = None


@dataclass(slots=True)
class DownloadResult:
    """What a download did: where bytes came from, and what it could skip."""

    path: str
    size: int
    chunks: int
    fetched: int = 0
    resumed: int = 0
    failovers: int = 0
    sources: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "chunks": self.chunks,
            "fetched": self.fetched,
            "resumed": self.resumed,
            "failovers": self.failovers,
            "sources": dict(self.sources),
        }


def download_file(
    client: PlanSource,
    file_id: str,
    out: Path,
    *,
    progress: Progress | None = None,
    on_total: Progress | None = None,
    stop_after_chunks: int | None = None,
) -> DownloadResult:
    """Fetch ``file_id`` into ``out`` using ``plan``; ``stop_after_chunks`` is a test hook."""
    plan = client.plan(file_id)
    nodes = [Source(str(n["node_id"]), str(n["url"])) for n in plan.get("nodes", [])]
    s3 = [Source("s3", str(plan["s3_url"]))] if plan.get("s3_url") else []
    pieces = [
        Piece(
            index=int(c["index"]),
            offset=int(c["offset"]),
            length=int(c["length"]),
            sha256=c.get("sha256"),
            sources=(*(nodes[int(i)] for i in c.get("replicas", [])), *s3),
        )
        for c in plan["chunks"]
    ]
    identity = {
        "file_id": file_id,
        "version": plan["version"],
        "size": int(plan["size"]),
        "etag": plan.get("etag"),
    }
    return _fetch(
        pieces,
        identity,
        out,
        session=client.session,
        verify=client.verify,
        timeout=client.edge_timeout,
        workers=client.workers,
        progress=progress,
        on_total=on_total,
        stop_after=stop_after_chunks,
    )


def download_share(
    share_url: str,
    out: Path,
    *,
    ca_cert: str | None,
    progress: Progress | None = None,
    on_total: Progress | None = None,
    workers: int = 4,
    timeout: float = 15.0,
    session: requests.Session | None = None,
) -> DownloadResult:
    """Fetch a shared file without an API key: follow the redirect once, then ranged GETs.

    A share carries no chunk hashes; TLS to the edge (checked against ``ca_cert``)
    is what guards the bytes in transit.
    """
    session = session or requests.Session()
    verify: str | bool = ca_cert or True
    edge_url = share_url
    for _ in range(5):  # the control plane redirects once; allow a short chain
        hop = session.get(
            edge_url,
            allow_redirects=False,
            verify=verify,
            timeout=timeout,
            headers={"Range": "bytes=0-0"},
        )
        if hop.status_code in (301, 302, 303, 307, 308):
            edge_url = urljoin(edge_url, hop.headers["Location"])
            continue
        break
    if hop.status_code == 416:  # bytes=0-0 of an empty file
        size = 0
    elif hop.status_code == 200:  # a server that ignores Range: the body is the file
        size = len(hop.content)
    elif hop.status_code == 206:
        size = int(hop.headers["Content-Range"].rsplit("/", 1)[1])
    else:
        raise DownloadError(f"the share answered {hop.status_code}: {_error_text(hop)}")
    node = urlparse(edge_url).netloc
    etag = hop.headers.get("ETag")
    pieces = [
        Piece(
            index=i,
            offset=off,
            length=min(SHARE_PIECE, size - off),
            sha256=None,
            sources=(Source(node, edge_url),) * _SHARE_ATTEMPTS,
            etag=etag,
        )
        for i, off in enumerate(range(0, size, SHARE_PIECE))
    ]
    identity = {"share": urlparse(share_url).path, "size": size, "etag": etag}
    return _fetch(
        pieces,
        identity,
        out,
        session=session,
        verify=verify,
        timeout=timeout,
        workers=workers,
        progress=progress,
        on_total=on_total,
        stop_after=None,
    )


def _fetch(
    pieces: list[Piece],
    identity: dict[str, Any],
    out: Path,
    *,
    session: requests.Session,
    verify: str | bool,
    timeout: float,
    workers: int,
    progress: Progress | None,
    on_total: Progress | None,
    stop_after: int | None,
) -> DownloadResult:
    out = Path(out)
    part = out.with_name(out.name + ".part")
    sidecar = out.with_name(out.name + ".part.json")
    size = int(identity["size"])
    saved = state.load(sidecar)
    done: set[int] = set()
    if saved is not None and saved.get("identity") == identity and part.exists():
        done = {int(i) for i in saved.get("done", [])}
    else:
        part.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with part.open("ab") as handle:
        handle.truncate(size)
    result = DownloadResult(path=str(out), size=size, chunks=len(pieces), resumed=len(done))
    if on_total is not None:
        on_total(size)
    if progress is not None:
        progress(sum(p.length for p in pieces if p.index in done))
    lock = threading.Lock()
    fd = os.open(part, os.O_WRONLY)
    try:

        def fetch(piece: Piece) -> None:
            with lock:
                if stop_after is not None and result.fetched >= stop_after:
                    raise DownloadError(f"stopped after {result.fetched} chunks (test hook)")
            data, source, tries = _fetch_piece(piece, session, verify, timeout)
            os.pwrite(fd, data, piece.offset)
            with lock:
                done.add(piece.index)
                result.fetched += 1
                result.failovers += tries - 1
                result.sources[source] += 1
                state.save(sidecar, {"identity": identity, "done": sorted(done)})
            if progress is not None:
                progress(piece.length)

        todo = [p for p in pieces if p.index not in done]
        with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
            for future in [pool.submit(fetch, p) for p in todo]:
                future.result()
        os.fsync(fd)
    finally:
        os.close(fd)
    part.replace(out)
    state.remove(sidecar)
    return result


def _fetch_piece(
    piece: Piece, session: requests.Session, verify: str | bool, timeout: float
) -> tuple[bytes, str, int]:
    """The chunk's bytes from the first source that answers right; then who, and tries."""
    errors: list[str] = []
    for tries, source in enumerate(piece.sources, start=1):
        end = piece.offset + piece.length - 1
        headers = {"Range": f"bytes={piece.offset}-{end}"}
        if piece.etag:
            headers["If-Match"] = piece.etag
        try:
            # verify per request: requests lets REQUESTS_CA_BUNDLE override Session.verify.
            response = session.get(
                source.url,
                headers=headers,
                verify=verify,
                timeout=(min(timeout, 5.0), timeout),
            )
        except requests.RequestException as exc:
            errors.append(f"{source.node_id}: {type(exc).__name__}")
            continue
        _check_same_version(response, piece)
        data = response.content
        if response.status_code == 200 and len(data) >= end + 1:
            data = data[piece.offset : end + 1]  # a server that ignored Range
        elif response.status_code != 206:
            errors.append(f"{source.node_id}: HTTP {response.status_code}")
            continue
        if len(data) != piece.length:
            errors.append(f"{source.node_id}: {len(data)} bytes, wanted {piece.length}")
            continue
        if piece.sha256 and hashlib.sha256(data).hexdigest() != piece.sha256:
            errors.append(f"{source.node_id}: SHA-256 mismatch")
            continue
        return data, source.node_id, tries
    raise DownloadError(f"chunk {piece.index}: no source served it ({'; '.join(errors)})")


class VersionChanged(DownloadError):
    """The file was replaced (or deleted) while it was being downloaded."""


def _check_same_version(response: requests.Response, piece: Piece) -> None:
    """No piece of another version: 412 (If-Match failed), 410 (the pinned version was
    replaced) or another ETag end the download; running it again fetches the new one."""
    if piece.etag is None:
        return
    changed = response.status_code in (410, 412) or (
        response.ok and response.headers.get("ETag") not in (None, piece.etag))
    if changed:
        raise VersionChanged("the file changed during the download (a new version or a "
                             "delete): get it again")


def download_folder(
    share_url: str,
    out_dir: Path,
    *,
    ca_cert: str | None,
    workers: int = 4,
    timeout: float = 15.0,
    session: requests.Session | None = None,
) -> list[DownloadResult]:
    """Fetch every file of a folder share (``share_url`` ends in ``/``) into ``out_dir``,
    at its relative path; each file as ``download_share`` fetches one."""
    if not share_url.endswith("/"):
        raise DownloadError("a folder share URL ends in '/'")
    session = session or requests.Session()
    verify: str | bool = ca_cert or True
    root = Path(out_dir).resolve()
    results = []
    for entry in folder_listing(share_url, session=session, verify=verify, timeout=timeout):
        relative = str(entry.get("path", ""))
        target = (root / relative).resolve()
        if not is_valid_path(relative) or not target.is_relative_to(root):
            raise DownloadError(f"the listing names an unsafe path: {relative[:200]!r}")
        results.append(download_share(share_url + url_path(relative), target, ca_cert=ca_cert,
                                      workers=workers, timeout=timeout, session=session))
    return results


def folder_listing(share_url: str, *, session: requests.Session, verify: str | bool,
                   timeout: float) -> list[dict[str, Any]]:
    """Every entry of a folder share's listing (all pages)."""
    files: list[dict[str, Any]] = []
    token = None
    while True:
        answer = session.get(share_url, params={"next_token": token} if token else None,
                             headers={"Accept": "application/json"}, verify=verify,
                             timeout=timeout)
        if answer.status_code != 200:
            raise DownloadError(f"the folder share answered {answer.status_code}: "
                                f"{_error_text(answer)}")
        page = answer.json()
        files.extend(page.get("files") or [])
        token = page.get("next_token")
        if not token:
            return files


def _error_text(response: requests.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason
