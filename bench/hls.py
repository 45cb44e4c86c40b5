"""HLS cold start: a player's first requests of a stream no edge has seen.

``hls_cold_start``: the time from the master playlist request to the last byte of the
first media segment, the four requests a player makes in turn (master playlist,
variant playlist, init segment, first segment; each named by the one before it),
for a folder uploaded just before and never read:

- through fsnode: the folder share's URL at the control plane (its 307 included), then
  the rest from the edge it redirects to, by the playlists' relative URLs;
- reference: the same four objects read straight from the origin (moto's S3) with
  presigned URLs.

Each side runs over connections opened and used before the clock starts (no handshake
on either side). The edge is the stack's ``direct`` one (its origin is moto itself, not
the throttling proxy): the redirect's edge is swapped for it, the token is valid on
any edge. The order alternates per stream.
"""

from __future__ import annotations

import http.client
import statistics
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BenchConfig, standalone
from bench.results import Goal, Row
from bench.stack import DIRECT, MIB, BenchStack, shared_stack, write_random_file

NAMES = ("hls_cold_start",)
GOALS: dict[str, Goal | None] = {"hls_cold_start": Goal("ratio", "<=", 1.5)}
# A player's first four requests, in order (relative to the folder).
CHAIN = ("master.m3u8", "v0/index.m3u8", "v0/init.mp4", "v0/seg00000.m4s")
SEGMENT_SECONDS = 4
UPLOADED_SEGMENTS = 4  # the edge prefetches the first 3 references (init + 2)


def _sizes(config: BenchConfig) -> tuple[int, int]:
    """(segments the playlist lists, bytes of a top-rendition segment: 4 s at 2 Mb/s)."""
    return config.pick_int(900, 300, 30), config.pick_int(MIB, MIB, 256 * 1024)


@dataclass(slots=True)
class Stream:
    share_url: str  # the folder share, ends in "/"
    direct_urls: list[str]  # presigned origin GETs of CHAIN, in order


def write_stream(folder: Path, segments: int, segment_bytes: int) -> None:
    """A two-rendition HLS folder as an encoder lays it out (the segments' bytes are
    random: nothing here decodes them)."""
    master = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for name, bandwidth, size in (
        ("v0", 2_500_000, segment_bytes),
        ("v1", 800_000, segment_bytes // 3),
    ):
        master += [
            f'#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS="avc1.64001f"',
            f"{name}/index.m3u8",
        ]
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{SEGMENT_SECONDS}",
            "#EXT-X-PLAYLIST-TYPE:VOD",
            '#EXT-X-MAP:URI="init.mp4"',
        ]
        for i in range(segments):
            lines += [f"#EXTINF:{SEGMENT_SECONDS}.0,", f"seg{i:05d}.m4s"]
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "index.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST", ""]))
        write_random_file(folder / name / "init.mp4", 1200)
        # Only the first segments are uploaded (enough for any prefetch of the first
        # few): the playlist lists a long film, but a cold start reads the first one.
        for i in range(min(segments, UPLOADED_SEGMENTS)):
            write_random_file(folder / name / f"seg{i:05d}.m4s", size)
    (folder / "master.m3u8").write_text("\n".join([*master, ""]))


def upload_stream(stack: BenchStack, label: str, config: BenchConfig) -> Stream:
    folder = stack.workdir / "hls" / label
    segments, segment_bytes = _sizes(config)
    write_stream(folder, segments=segments, segment_bytes=segment_bytes)
    prefix = f"bench-hls/{label}/"
    records = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        records[relative] = stack.client.upload(path, remote_path=prefix + relative)
    share = stack.client.share_folder(prefix, 6 * 3600)
    s3 = _s3(stack)
    direct = []
    for relative in CHAIN:
        record = stack.client.get_file(records[relative]["file_id"])
        direct.append(
            s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": record["bucket"], "Key": record["key"]},
                ExpiresIn=3600,
            )
        )
    return Stream(share_url=share["share_url"], direct_urls=direct)


def _s3(stack: BenchStack) -> Any:
    import boto3
    from botocore.config import Config

    from fsnode.localstack.resources import LOCAL_CREDENTIALS

    return boto3.client(
        "s3",
        endpoint_url=stack.aws_endpoint,
        region_name=stack.info.region,
        config=Config(signature_version="s3v4"),
        **LOCAL_CREDENTIALS,
    )


class Connections:
    """One open connection per origin (scheme, host, port), reused like a player's."""

    def __init__(self, stack: BenchStack) -> None:
        self._stack = stack
        self._open: dict[tuple[str, str], http.client.HTTPConnection] = {}

    def get(self, url: str) -> tuple[int, dict[str, str], bytes]:
        """GET ``url`` and read the whole body: (status, headers, body)."""
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        conn = self._open.get(key)
        if conn is None:
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(
                    parts.netloc, timeout=60, context=self._stack.ssl_context()
                )
            else:
                conn = http.client.HTTPConnection(parts.netloc, timeout=60)
            self._open[key] = conn
        conn.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path)
        answer = conn.getresponse()
        body = answer.read()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, body

    def ok(self, url: str) -> bytes:
        status, _, body = self.get(url)
        if status != 200:
            raise RuntimeError(f"GET {url.split('?')[0]} answered {status}: {body[:200]!r}")
        return body

    def close(self) -> None:
        for conn in self._open.values():
            conn.close()


def first_variant(master: bytes) -> str:
    """The URI after the first ``#EXT-X-STREAM-INF``, as a player picks a start level."""
    lines = master.decode().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF"))
    return lines[at + 1].strip()


def init_and_first_segment(variant: bytes) -> tuple[str, str]:
    lines = variant.decode().splitlines()
    init = next(line for line in lines if line.startswith("#EXT-X-MAP:"))
    segment = next(line for line in lines if line and not line.startswith("#"))
    return init.split('URI="', 1)[1].split('"', 1)[0], segment.strip()


STEPS = ("redirect", "master", "variant", "init", "segment")


def _through_edge(conns: Connections, stream: Stream, edge_netloc: str) -> list[float]:
    """Seconds at the end of each of STEPS (the last is the whole chain). Each URL is
    resolved against the playlist that names it, as a player does."""
    started = time.perf_counter()
    marks = []
    status, headers, _ = conns.get(stream.share_url + CHAIN[0])
    marks.append(time.perf_counter() - started)
    if status != 307:
        raise RuntimeError(f"the control plane answered {status} for the master playlist")
    master_url = urllib.parse.urlsplit(headers["location"])._replace(netloc=edge_netloc).geturl()
    master = conns.ok(master_url)
    marks.append(time.perf_counter() - started)
    variant_url = urllib.parse.urljoin(master_url, first_variant(master))
    init, segment = init_and_first_segment(conns.ok(variant_url))
    marks.append(time.perf_counter() - started)
    conns.ok(urllib.parse.urljoin(variant_url, init))
    marks.append(time.perf_counter() - started)
    conns.ok(urllib.parse.urljoin(variant_url, segment))
    marks.append(time.perf_counter() - started)
    return marks


def _direct(conns: Connections, stream: Stream) -> float:
    """The same chain from presigned origin URLs (the playlists parsed all the same)."""
    master_url, variant_url, init_url, segment_url = stream.direct_urls
    started = time.perf_counter()
    first_variant(conns.ok(master_url))
    init_and_first_segment(conns.ok(variant_url))
    conns.ok(init_url)
    conns.ok(segment_url)
    return time.perf_counter() - started


def _steps_note(marks: list[list[float]]) -> str:
    """The median time of each step (from the end of the one before), in ms."""
    steps = []
    for i, name in enumerate(STEPS):
        spans = [m[i] - (m[i - 1] if i else 0.0) for m in marks]
        steps.append(f"{name} {statistics.median(spans) * 1000:.1f}")
    return ", ".join(steps)


def measure(stack: BenchStack, config: BenchConfig) -> list[Row]:
    count = config.pick_int(8, 4, 2)
    run = f"{time.time_ns():x}"
    streams = [upload_stream(stack, f"{run}-{i}", config) for i in range(count + 1)]
    edge_netloc = urllib.parse.urlsplit(stack.edges[DIRECT].url).netloc
    conns = Connections(stack)
    edge_marks: list[list[float]] = []
    direct_times: list[float] = []
    try:
        # The first stream only opens the connections (and is not counted).
        _through_edge(conns, streams[0], edge_netloc)
        _direct(conns, streams[0])
        for i, stream in enumerate(streams[1:], start=1):
            sides = ["edge", "direct"] if i % 2 else ["direct", "edge"]
            for side in sides:
                if side == "edge":
                    edge_marks.append(_through_edge(conns, stream, edge_netloc))
                else:
                    direct_times.append(_direct(conns, stream))
    finally:
        conns.close()
    segments, segment_bytes = _sizes(config)
    edge_times = [marks[-1] for marks in edge_marks]
    return [
        Row(
            name="hls_cold_start",
            value=statistics.median(edge_times) * 1000,
            reference=statistics.median(direct_times) * 1000,
            goal=GOALS["hls_cold_start"],
            unit="ms (median)",
            note=(
                f"{count} never-seen streams; master, variant playlist ({segments} "
                f"segments), init, first segment ({segment_bytes // 1024} KiB); fsnode = the "
                f"control plane's 307, then the edge over HTTPS (median ms per step: "
                f"{_steps_note(edge_marks)}); edge max {max(edge_times) * 1000:.1f} ms, "
                f"direct max {max(direct_times) * 1000:.1f} ms"
            ),
        )
    ]


def run(config: BenchConfig, wanted: set[str]) -> list[Row]:
    return measure(shared_stack(config), config) if "hls_cold_start" in wanted else []


def main() -> int:
    return standalone(NAMES, GOALS, run, "HLS cold start: edge against the origin directly")


if __name__ == "__main__":
    raise SystemExit(main())
