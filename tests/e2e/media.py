"""Small adaptive-streaming folders made by ffmpeg, and ffmpeg's decoded-frame digests.

Short, low-resolution and quick to make: two H.264 renditions (320x180 and 160x90) of
``SECONDS`` of a test pattern, 2-second segments.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SECONDS = 12  # the browser test plays past 10 s
_SOURCE = ["-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=25:duration={SECONDS}"]
_RENDITIONS = [
    "-filter_complex", "[0:v]split=2[a][b];[b]scale=160:90[small]",
    "-map", "[a]", "-map", "[small]",
    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",  # a key frame every segment
    "-b:v:0", "300k", "-b:v:1", "100k",
]  # fmt: skip


def _ffmpeg(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=120,
        cwd=cwd,
    )


def make_hls(folder: Path) -> list[str]:
    """A two-rendition fMP4 HLS folder: ``master.m3u8``, ``v{0,1}/index.m3u8``,
    ``v{0,1}/init_{0,1}.mp4``, ``v{0,1}/seg00N.m4s``. Returns its relative paths."""
    folder.mkdir(parents=True, exist_ok=True)
    _ffmpeg(
        *_SOURCE,
        *_RENDITIONS,
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_playlist_type",
        "vod",
        "-hls_segment_type",
        "fmp4",
        "-hls_fmp4_init_filename",
        "init.mp4",
        "-master_pl_name",
        "master.m3u8",
        "-var_stream_map",
        "v:0 v:1",
        "-hls_segment_filename",
        "v%v/seg%03d.m4s",
        "v%v/index.m3u8",
        cwd=folder,
    )
    return relative_files(folder)


def make_dash(folder: Path) -> list[str]:
    """A two-representation DASH folder: ``manifest.mpd``, ``init-stream{0,1}.m4s``,
    ``chunk-stream{0,1}-0000N.m4s``. Returns its relative paths."""
    folder.mkdir(parents=True, exist_ok=True)
    _ffmpeg(
        *_SOURCE,
        *_RENDITIONS,
        "-f",
        "dash",
        "-seg_duration",
        "2",
        "-use_template",
        "1",
        "-use_timeline",
        "1",
        "manifest.mpd",
        cwd=folder,
    )
    return relative_files(folder)


def relative_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def framemd5(source: str, *input_options: str) -> list[str]:
    """ffmpeg's MD5 of every decoded frame of every stream of ``source`` (a path or URL),
    without the header's software line."""
    out = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            *input_options,
            "-i",
            source,
            "-map",
            "0",
            "-f",
            "framemd5",
            "-",
        ],
        check=True,
        timeout=180,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return [line for line in out if not line.startswith("#software")]
