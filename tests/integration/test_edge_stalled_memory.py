"""Stalled readers cost little and give it back (issue 17.5): the real edge app in its
own process (``edge_process.py``), TLS clients that send a request and never read,
and the process's RSS read from /proc.

Before the limits, 100 such clients grew the edge by about 180 MiB (1 MiB blocks, each
copied into TLS and TCP buffers) that did not come back after they left. With 256 KiB
blocks a stalled TLS stream still cost about 0.6 MiB: asyncio's TLS layer lets 512 KiB
of encrypted bytes pile up in OpenSSL's outgoing buffer once the TCP transport's
buffer (a whole block) is full. Now a TLS answer reads and writes 16 KiB at a time and
waits for each to drain below small marks (``listener.TLS_BLOCK``): a stalled stream
costs its kernel socket buffers (not in RSS) and well under 256 KiB of the process.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers import wait_for

MIB = 1024 * 1024
HERE = Path(__file__).resolve().parent
SIZE = 8 * MIB
STALLED = 50
# What one stalled TLS stream may hold in user space: a TLS block waiting in the TCP
# transport, one in OpenSSL's outgoing buffer, the one being written, the 32 KiB TLS
# read buffer, the request's objects, and generous slack.
PER_STREAM = 256 * 1024
# What may stay after they left (allocator and interpreter noise).
SETTLED = 16 * MIB


@dataclass
class EdgeProcess:
    pid: int
    port: int
    http_port: int
    target: str
    ca_file: str

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def metric(self, name: str) -> float:
        text = requests.get(
            f"https://127.0.0.1:{self.port}/metrics", verify=self.ca_file, timeout=30
        ).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name}")

    def fetch(self) -> bytes:
        with requests.Session() as session:
            session.trust_env = False
            answer = session.get(
                f"https://127.0.0.1:{self.port}{self.target}", verify=self.ca_file, timeout=60
            )
        assert answer.status_code == 200
        return answer.content

    def stall(self, count: int) -> list[socket.socket]:
        """``count`` TLS clients that ask for the file and never read."""
        context = ssl.create_default_context(cafile=self.ca_file)
        clients: list[socket.socket] = []
        for _ in range(count):
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.settimeout(30)
            raw.connect(("127.0.0.1", self.port))
            client = context.wrap_socket(raw, server_hostname="127.0.0.1")
            client.sendall(f"GET {self.target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            clients.append(client)
        return clients

    def settle(self) -> None:
        """Wait until no request is in flight and freed memory was given back since."""
        # (connections_open counts the /metrics request's own connection too)
        wait_for(lambda: self.metric("fsnode_edge_requests_in_flight") == 0, "clients gone")
        released = self.metric("fsnode_edge_memory_releases_total")
        wait_for(
            lambda: self.metric("fsnode_edge_memory_releases_total") > released,
            "memory given back",
        )


@pytest.fixture
def edge() -> Iterator[EdgeProcess]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.edge_process", str(SIZE), str(MIB), "600"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE.parent.parent,  # the repository: the helpers import as tests.integration
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        line = process.stdout.readline()
        while line and not line.startswith("{"):  # moto announces itself first
            line = process.stdout.readline()
        assert line, "the edge process ended before serving"
        yield EdgeProcess(**json.loads(line))
    finally:
        process.stdin.close()
        process.wait(timeout=60)


def _settled_growth(edge: EdgeProcess, baseline: int) -> int:
    """RSS growth once it stops changing: each stalled answer writes until its buffers
    are full, then waits; two reads in a row within 1 % of each other."""
    readings = [edge.rss()]

    def steady() -> bool:
        time.sleep(0.5)
        readings.append(edge.rss())
        return abs(readings[-1] - readings[-2]) <= readings[-2] // 100

    wait_for(steady, "RSS to stop growing")
    return readings[-1] - baseline


def test_stalled_readers_cost_little_and_give_it_back(edge: EdgeProcess) -> None:
    # A first round brings the allocator to its working size; the baseline is after it.
    for client in edge.stall(STALLED):
        client.close()
    edge.settle()
    baseline = edge.rss()

    clients = edge.stall(STALLED)
    try:
        wait_for(
            lambda: edge.metric("fsnode_edge_requests_in_flight") == STALLED,
            "every stalled request in flight",
        )
        assert len(edge.fetch()) == SIZE  # everyone else is still served
        # Once every stream has filled its socket and stopped (no more growth).
        grown = _settled_growth(edge, baseline)
        print(f"stalled TLS streams: {grown / STALLED / 1024:.0f} KiB of RSS each")
        assert grown < STALLED * PER_STREAM, (
            f"{grown / STALLED / 1024:.0f} KiB per stalled stream (bound {PER_STREAM // 1024})"
        )
    finally:
        for client in clients:
            client.close()
    edge.settle()
    assert edge.rss() < baseline + SETTLED, (
        f"{(edge.rss() - baseline) / MIB:.0f} MiB stayed after the clients left"
    )
