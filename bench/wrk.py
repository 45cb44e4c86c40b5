"""The load generator: ``wrk`` pinned away from the server's core, with a Lua
script that asks for random aligned ranges (or the whole file) and prints its
summary as JSON, so nothing is scraped from wrk's human output."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.common import Unavailable, client_cpus

SCRIPT = r"""
local range_size = 0
local file_size = 0

function init(args)
  range_size = tonumber(args[1])
  file_size = tonumber(args[2])
  -- a different sequence per thread: the table address differs
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
end

function request()
  if range_size > 0 then
    local blocks = math.floor(file_size / range_size)
    local first = math.random(0, blocks - 1) * range_size
    wrk.headers["Range"] = "bytes=" .. first .. "-" .. (first + range_size - 1)
  end
  return wrk.format(nil)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"bytes":%d,"duration_us":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    bytes: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    def __add__(self, other: WrkResult) -> WrkResult:
        """Two runs as one (latency percentiles: the worse of the two)."""
        return WrkResult(
            requests=self.requests + other.requests,
            bytes=self.bytes + other.bytes,
            seconds=self.seconds + other.seconds,
            errors=self.errors + other.errors,
            p50_ms=max(self.p50_ms, other.p50_ms),
            p99_ms=max(self.p99_ms, other.p99_ms),
        )

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def bytes_per_second(self) -> float:
        return self.bytes / self.seconds if self.seconds else 0.0


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise Unavailable("wrk is not installed (apt-get install wrk)")
    return found


def script_path(directory: Path) -> Path:
    path = directory / "ranges.lua"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(SCRIPT)
    return path


def run_wrk(
    url: str,
    *,
    range_size: int,
    file_size: int,
    connections: int,
    seconds: float,
    workdir: Path,
    timeout_seconds: float = 30.0,
) -> WrkResult:
    """Load ``url`` for ``seconds``; ``range_size`` 0 asks for the whole file."""
    cores = client_cpus()
    threads = max(1, min(len(cores), connections))
    argv = [
        "taskset",
        "-c",
        ",".join(map(str, cores)),
        wrk_binary(),
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        f"{round(timeout_seconds)}s",
        "-s",
        str(script_path(workdir)),
        url,
        "--",
        str(range_size),
        str(file_size),
    ]
    if not shutil.which("taskset"):
        argv = argv[3:]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + timeout_seconds + 30
    )
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            data = json.loads(line.removeprefix("WRK_JSON "))
            errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
            return WrkResult(
                requests=data["requests"],
                bytes=data["bytes"],
                seconds=data["duration_us"] / 1e6,
                errors=errors,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
            )
    raise RuntimeError(f"wrk printed no summary (rc={done.returncode}): {done.stderr[-400:]}")
