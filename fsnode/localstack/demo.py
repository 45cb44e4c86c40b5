"""The demo video ``make run`` shares: generated with ffmpeg, so nothing is downloaded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from fsnode.localstack.errors import StackError


def make_demo_video(out: Path, seconds: int = 30) -> Path:
    """Write an H.264/AAC MP4 test pattern with the index up front (plays while loading)."""
    if out.exists():
        return out
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise StackError("ffmpeg is needed for the demo video: apt-get install ffmpeg")
    tmp = out.with_suffix(".tmp.mp4")
    subprocess.run(
        [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-movflags", "+faststart", str(tmp),
        ],
        check=True,
    )  # fmt: skip
    tmp.replace(out)
    return out
