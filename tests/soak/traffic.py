"""Mixed range traffic for the soak, each answer checked byte for byte.

Readers pick a random file and a random range shape (one range, open-ended, suffix,
several ranges at once) and read it either the way a player does (the share URL's
redirect, then the edge) or the way ``fsnode get`` does (the plan's replicas in order,
then S3). A failed try (refused connection, a cut body, a 5xx) is retried until a
deadline; a body that arrives whole but differs from the file is a wrong byte, which
the soak must never see.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import requests

from fsnode.client import FsnodeClient

RETRY_DEADLINE = 90.0  # seconds one read may keep failing before it counts as failed


@dataclass(slots=True)
class SoakFile:
    file_id: str
    data: bytes
    share_url: str


@dataclass(slots=True)
class Tally:
    """What the traffic saw; shared by every worker (guarded by ``lock``)."""

    reads: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    bytes_checked: int = 0
    wrong: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    uploads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, kind: str, size: int) -> None:
        with self.lock:
            self.reads[kind] += 1
            self.bytes_checked += size

    def retry(self, kind: str) -> None:
        with self.lock:
            self.retries[kind] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "reads": dict(self.reads),
            "retries": dict(self.retries),
            "bytes_checked": self.bytes_checked,
            "wrong": self.wrong[:20],
            "wrong_count": len(self.wrong),
            "failed": self.failed[:20],
            "failed_count": len(self.failed),
            "uploads": self.uploads,
        }


class WrongBytes(Exception):
    """A complete answer whose bytes are not the file's."""


class Retry(Exception):
    """This try failed in a way another try may not (a dead edge, a cut body, a 5xx)."""


def random_ranges(rng: random.Random, size: int) -> tuple[str, list[tuple[int, int]]]:
    """A Range header and the byte spans it asks for (inclusive)."""
    shape = rng.choice(["one", "one", "open", "suffix", "several"])
    if shape == "open":
        first = rng.randrange(size)
        return f"bytes={first}-", [(first, size - 1)]
    if shape == "suffix":
        count = rng.randint(1, min(size, 3 * 1024 * 1024))
        return f"bytes=-{count}", [(size - count, size - 1)]
    if shape == "several" and size > 64 * 1024:
        starts = sorted(rng.sample(range(0, size - 1, 16 * 1024), k=3))
        spans = [(s, min(s + rng.randint(0, 8 * 1024), size - 1)) for s in starts]
        return "bytes=" + ",".join(f"{a}-{b}" for a, b in spans), spans
    first = rng.randrange(size)
    last = min(size - 1, first + rng.randint(0, 6 * 1024 * 1024))
    return f"bytes={first}-{last}", [(first, last)]


def check_answer(
    response: requests.Response, data: bytes, spans: list[tuple[int, int]], what: str
) -> int:
    """Raise Retry or WrongBytes unless ``response`` carries exactly the asked spans."""
    if response.status_code >= 500 or response.status_code in (403, 404):
        # 403/404 from S3 or an edge mid-restart; 5xx: retry elsewhere or later.
        raise Retry(f"{what}: HTTP {response.status_code}")
    body = response.content  # requests raises on a body shorter than Content-Length
    declared = response.headers.get("Content-Length")
    if declared is not None and int(declared) != len(body):
        raise Retry(f"{what}: {len(body)} of {declared} bytes")
    if response.status_code == 200 and body == data:
        return len(body)  # a server may ignore Range (S3 does for several ranges)
    if response.status_code != 206:
        raise WrongBytes(f"{what}: HTTP {response.status_code} to a Range request")
    kind = response.headers.get("Content-Type", "")
    parts = _multipart(body, kind) if kind.startswith("multipart/byteranges") else None
    if parts is None:
        first, last = _content_range(response.headers.get("Content-Range", ""))
        parts = [(first, last, body)]
    for first, last, payload in parts:
        if payload != data[first : last + 1]:
            raise WrongBytes(f"{what}: bytes {first}-{last} differ from the file")
    for a, b in spans:
        if not any(first <= a and b <= last for first, last, _ in parts):
            raise WrongBytes(f"{what}: asked {a}-{b}, got {[(f, e) for f, e, _ in parts]}")
    return len(body)


def _content_range(value: str) -> tuple[int, int]:
    unit, _, rest = value.partition(" ")
    span = rest.split("/", 1)[0]
    if unit != "bytes" or "-" not in span:
        raise WrongBytes(f"no usable Content-Range: {value!r}")
    first, last = span.split("-", 1)
    return int(first), int(last)


def _multipart(body: bytes, content_type: str) -> list[tuple[int, int, bytes]]:
    boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
    parts = []
    for piece in body.split(b"--" + boundary)[1:]:
        if piece.startswith(b"--"):
            break
        head, _, payload = piece.lstrip(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.decode().split(":", 1) for line in head.split(b"\r\n") if b":" in line)
        ranges = {k.strip().lower(): v.strip() for k, v in headers.items()}
        first, last = _content_range(ranges.get("content-range", ""))
        parts.append((first, last, payload[: last - first + 1]))
        if payload[last - first + 1 :] not in (b"\r\n", b""):
            raise WrongBytes("a multipart part is longer than its Content-Range")
    return parts


class Traffic:
    """Reader and uploader threads over a growing set of files, until ``stop`` is set."""

    def __init__(
        self, client: FsnodeClient, files: list[SoakFile], ca_cert: str, workdir: Path
    ) -> None:
        self.client = client
        self.files = files
        self.ca_cert = ca_cert
        self.workdir = workdir
        self.tally = Tally()
        self.stop = threading.Event()
        self._files_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, readers: int, upload_every: float, download_every: float) -> None:
        for i in range(readers):
            kind = "share" if i % 2 == 0 else "plan"
            self._spawn(f"reader-{i}", self._reader, kind, random.Random(i))
        self._spawn("uploader", self._uploader, upload_every, random.Random(1000))
        self._spawn("downloader", self._downloader, download_every, random.Random(2000))

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=RETRY_DEADLINE + 60)

    def snapshot(self) -> list[SoakFile]:
        with self._files_lock:
            return list(self.files)

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=self._guard, args=(target, *args), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _guard(self, target: Any, *args: Any) -> None:
        try:
            target(*args)
        except Exception as exc:  # a worker that dies would quietly stop checking
            with self.tally.lock:
                self.tally.failed.append(f"worker crashed: {exc!r}")

    def _reader(self, kind: str, rng: random.Random) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            target = rng.choice(self.snapshot())
            if not target.data:
                continue
            header, spans = random_ranges(rng, len(target.data))
            what = f"{kind} {target.file_id} {header[:60]}"
            self._until_done(kind, what, partial(self._read, kind, session, target, header, spans))

    def _read(
        self,
        kind: str,
        session: requests.Session,
        target: SoakFile,
        header: str,
        spans: list[tuple[int, int]],
    ) -> int:
        what = f"{kind} {target.file_id} {header[:60]}"
        if kind == "share":
            redirect = session.get(target.share_url, allow_redirects=False, timeout=(5, 30))
            if redirect.status_code != 307:
                raise Retry(f"{what}: the share answered {redirect.status_code}")
            sources = [redirect.headers["Location"]]
        else:
            first = min(a for a, _ in spans)
            last = max(b for _, b in spans)
            plan = self.client.plan(target.file_id, first, last - first + 1)
            chunk = plan["chunks"][0]
            sources = [r["url"] for r in chunk["replicas"]] + [chunk["s3_url"]]
        errors = []
        for url in sources:
            try:
                response = session.get(
                    url, headers={"Range": header}, verify=self.ca_cert, timeout=(5, 30)
                )
                return check_answer(response, target.data, spans, what)
            except (requests.RequestException, Retry) as exc:
                errors.append(f"{url[:40]}: {exc!r}"[:200])
        raise Retry("; ".join(errors))

    def _until_done(self, kind: str, what: str, attempt: Any) -> None:
        deadline = time.monotonic() + RETRY_DEADLINE
        last = ""
        while time.monotonic() < deadline:
            try:
                self.tally.ok(kind, attempt())
                return
            except WrongBytes as exc:
                with self.tally.lock:
                    self.tally.wrong.append(str(exc))
                return
            except (Retry, requests.RequestException, OSError) as exc:
                last = repr(exc)[:300]
                self.tally.retry(kind)
                time.sleep(0.5)
            except Exception as exc:  # the control plane's ApiError and the like
                last = repr(exc)[:300]
                self.tally.retry(kind)
                time.sleep(0.5)
        with self.tally.lock:
            self.tally.failed.append(f"{what}: {last}")

    def _uploader(self, every: float, rng: random.Random) -> None:
        while not self.stop.wait(every):
            size = rng.choice([1, 70_000, 4 * 1024 * 1024, 5 * 1024 * 1024 + 333])
            data = rng.randbytes(size)
            path = self.workdir / f"upload-{self.tally.uploads}.bin"
            path.write_bytes(data)

            def upload(path: Path = path, data: bytes = data) -> int:
                record = self.client.upload(path, resume=False)
                share = self.client.share(record["file_id"], 24 * 3600)
                with self._files_lock:
                    self.files.append(SoakFile(record["file_id"], data, share["share_url"]))
                with self.tally.lock:
                    self.tally.uploads += 1
                return len(data)

            self._until_done("upload", f"upload of {size} bytes", upload)

    def _downloader(self, every: float, rng: random.Random) -> None:
        while not self.stop.wait(every):
            target = rng.choice(self.snapshot())
            out = self.workdir / f"download-{target.file_id}.bin"

            def download(target: SoakFile = target, out: Path = out) -> int:
                self.client.download(target.file_id, out)
                if out.read_bytes() != target.data:
                    raise WrongBytes(f"download of {target.file_id} differs from the file")
                out.unlink()
                return len(target.data)

            self._until_done("download", f"download {target.file_id}", download)
