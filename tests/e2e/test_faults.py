"""Faults against a stack of its own: restarts, a dead control plane, corrupted cache files,
a crowd on one cold chunk, and hostile Range headers. Every read is checked byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from fsnode.localstack import processes
from fsnode.localstack.stack import StackInfo
from tests.e2e.cli_helpers import cli
from tests.e2e.conftest import own_stack, run_cli

SIZE = 9 * 1024 * 1024 + 12345  # three chunks, the last one short
CHUNK = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    with own_stack(
        tmp_path_factory,
        "fault-stack",
        "--nodes",
        "2",
        "--heartbeat-interval",
        "1",
        "--heartbeat-timeout",
        "5",
    ) as info:
        yield info


def _upload(stack: StackInfo, tmp_path: Path, size: int = SIZE) -> tuple[bytes, str]:
    data = os.urandom(size)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    # Each upload its own file: an upload to a path a live file has is a new version.
    result = run_cli(
        "upload",
        str(path),
        "--path",
        f"faults/{os.urandom(8).hex()}.bin",
        "--share",
        "--json",
        "--state-dir",
        stack.state_dir,
    )
    assert result.returncode == 0, result.stderr
    share_url = json.loads(result.stdout)["share_url"]
    redirect = requests.get(share_url, allow_redirects=False, timeout=30)
    assert redirect.status_code == 307, redirect.text
    return data, redirect.headers["Location"]


def _get(stack: StackInfo, url: str, range_header: str | None = None) -> requests.Response:
    headers = {"Range": range_header} if range_header else {}
    # verify per request: requests lets REQUESTS_CA_BUNDLE override Session.verify.
    return requests.get(url, headers=headers, verify=stack.ca_cert, timeout=60)


def _metrics(stack: StackInfo, edge_url: str) -> dict[str, float]:
    text = requests.get(f"{edge_url}/metrics", verify=stack.ca_cert, timeout=10).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(fsnode_edge_[a-z_]+) ([0-9.e+-]+)", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def _edge_of(stack: StackInfo, url: str) -> tuple[int, str]:
    for index, edge in enumerate(stack.edges):
        if url.startswith(edge.url + "/"):
            return index, edge.url
    raise AssertionError(f"{url} is not on any edge")


@pytest.fixture(scope="module")
def small_file(
    fault_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> tuple[bytes, str]:
    return _upload(fault_stack, tmp_path_factory.mktemp("small"), size=100_000)


def _served_certificate(url: str) -> bytes:
    parsed = urlparse(url)
    assert parsed.hostname is not None and parsed.port is not None, url
    return ssl.get_server_certificate((parsed.hostname, parsed.port)).encode()


def test_restarted_edge_serves_from_its_cache(fault_stack: StackInfo, tmp_path: Path) -> None:
    data, url = _upload(fault_stack, tmp_path)
    assert _get(fault_stack, url).content == data
    index, _ = _edge_of(fault_stack, url)
    before = StackInfo.load(Path(fault_stack.state_dir)).edges[index]
    certificate = _served_certificate(before.url)

    result = run_cli("local", "restart", f"edge-{index + 1}", "--state-dir", fault_stack.state_dir)
    assert result.returncode == 0, result.stderr
    after = StackInfo.load(Path(fault_stack.state_dir)).edges[index]
    edge_url = after.url
    again = _get(fault_stack, url.replace(_edge_of(fault_stack, url)[1], edge_url))

    assert again.content == data
    # A fresh process: every byte it served came from disk, none from the origin.
    assert _metrics(fault_stack, edge_url).get("fsnode_edge_origin_bytes_total", 0) == 0
    # A restart replays the registration (its stored idempotency key): the same node,
    # with the same certificate, not a new node beside a silent one.
    assert after.node_id == before.node_id
    assert _served_certificate(edge_url) == certificate


def test_edges_keep_serving_while_the_control_plane_is_down(
    fault_stack: StackInfo, tmp_path: Path
) -> None:
    """The data plane needs only S3: with the control plane process stopped, shares
    minted before stream byte-exact from EVERY edge, a file no edge had read included,
    and a folder share's files too; heartbeats resume when it returns."""
    data, url = _upload(fault_stack, tmp_path)
    assert _get(fault_stack, url, "bytes=0-0").status_code == 206  # one edge knows the file
    (tmp_path / "unread").mkdir()
    unread, unread_url = _upload(fault_stack, tmp_path / "unread", size=CHUNK + 777)
    prefix = f"outage-{os.urandom(4).hex()}/show/"
    folder = {
        "index.m3u8": b"#EXTM3U\n#EXTINF:4,\nseg0.ts\n#EXT-X-ENDLIST\n",
        "seg0.ts": os.urandom(CHUNK + 5),
    }
    for name, body in folder.items():
        local = tmp_path / "folder" / name
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(body)
        cli(fault_stack, "upload", str(local), "--path", prefix + name)
    share_url = cli(fault_stack, "share", "--prefix", prefix, "--ttl", "3600")["share_url"]
    token = urlparse(share_url).path.split("/")[2]
    state = Path(fault_stack.state_dir)

    run_cli("local", "kill", "api", "--state-dir", str(state))
    try:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{fault_stack.api}/openapi.json", timeout=5)
        for edge in fault_stack.edges:
            # The redirect's URL form (pinned to the version current then) on each edge.
            for body, redirect in ((data, url), (unread, unread_url)):
                on_edge = edge.url + redirect[len(_edge_of(fault_stack, redirect)[1]) :]
                assert _get(fault_stack, on_edge).content == body
                ranged = _get(fault_stack, on_edge, f"bytes={CHUNK - 3}-{CHUNK + 2}")
                assert (ranged.status_code, ranged.content) == (206, body[CHUNK - 3 : CHUNK + 3])
            for name, body in folder.items():
                answer = _get(fault_stack, f"{edge.url}/t/{token}/{prefix}{name}")
                assert (answer.status_code, answer.content) == (200, body), answer.text
    finally:
        back = int(time.time())
        result = run_cli("local", "restart", "api", "--state-dir", str(state))
        assert result.returncode == 0, result.stderr

    # The edges' heartbeats failed meanwhile and backed off; they must resume on their own.
    def heard_again() -> bool:
        answer = requests.get(
            f"{fault_stack.api}/nodes",
            headers={"authorization": f"Bearer {fault_stack.api_key}"},
            timeout=10,
        )
        nodes = {n["node_id"]: n for n in answer.json()["nodes"]}
        return all(
            nodes[edge.node_id]["status"] == "active"
            and int(nodes[edge.node_id]["last_heartbeat"]) >= back
            for edge in fault_stack.edges
        )

    processes.wait_until(
        heard_again, 90, "every edge to heartbeat after the control plane returned"
    )


def test_corrupted_chunk_file_is_never_served(fault_stack: StackInfo, tmp_path: Path) -> None:
    data, url = _upload(fault_stack, tmp_path)
    assert _get(fault_stack, url).content == data
    index, edge_url = _edge_of(fault_stack, url)
    file_id = url.split("/f/")[1].split("?")[0]
    state_dir = Path(fault_stack.edges[index].state_dir)

    def chunk_files() -> list[Path]:
        return [
            p
            for p in state_dir.rglob("*")
            if p.is_file() and file_id in str(p) and p.stat().st_size == CHUNK
        ]

    # The response can end before the stream-through fill has renamed its file into place.
    processes.wait_until(
        lambda: len(chunk_files()) == SIZE // CHUNK, 30, "the edge to hold the full chunks on disk"
    )
    cached = chunk_files()
    for path in cached:
        raw = bytearray(path.read_bytes())
        raw[12345] ^= 0xFF
        path.write_bytes(bytes(raw))

    # A restart leaves only the disk. The damage may be found before it (the node
    # agent's first open for warm work, its scrub) or after (a worker's first open):
    # the node's counters sum every process's and carry over the restart.
    run_cli("local", "restart", f"edge-{index + 1}", "--state-dir", fault_stack.state_dir)
    edge_url = StackInfo.load(Path(fault_stack.state_dir)).edges[index].url
    url = edge_url + url[url.index("/f/") :]

    assert _get(fault_stack, url).content == data
    assert _get(fault_stack, url, "bytes=12000-13000").content == data[12000:13001]
    assert _metrics(fault_stack, edge_url)["fsnode_edge_integrity_failures_total"] >= 1


def test_a_crowd_on_one_cold_chunk_causes_one_origin_fetch(
    fault_stack: StackInfo, tmp_path: Path
) -> None:
    # The last of ten chunks: upload-time replication warms only a video's first chunks.
    data, url = _upload(fault_stack, tmp_path, size=10 * CHUNK)
    _, edge_url = _edge_of(fault_stack, url)
    before = _metrics(fault_stack, edge_url)
    base = 9 * CHUNK

    def read(i: int) -> bytes:
        start = base + (i * 997) % (CHUNK - 1000)
        response = _get(fault_stack, url, f"bytes={start}-{start + 999}")
        assert response.status_code == 206
        return response.content if response.content == data[start : start + 1000] else b""

    with ThreadPoolExecutor(max_workers=200) as pool:
        answers = list(pool.map(read, range(200)))

    assert all(answers), "every client gets its exact bytes"
    after = _metrics(fault_stack, edge_url)
    demand = "fsnode_edge_cache_demand_fills_total"
    # Replication may warm other chunks meanwhile; the crowd itself started one fill.
    assert after[demand] - before[demand] == 1


@pytest.mark.parametrize(
    ("range_header", "expect"),
    [
        ("bytes=abc", 200),
        ("bytes=5-3", 200),
        ("bytes=--5", 200),
        ("bytes=-0", 416),
        ("items=0-5", 200),
        ("bytes=0-9999999999999999999", 206),
        # Past 19 digits a position is not a real offset: the header is ignored.
        ("bytes=0-99999999999999999999999999", 200),
        ("bytes=" + ",".join(f"{i * 10}-{i * 10 + 5}" for i in range(300)), 200),
        ("bytes=0-100,50-150", 206),
        ("bytes=99999999999-", 416),
    ],
    ids=[
        "garbage", "reversed", "negative", "empty-suffix", "other-unit", "huge", "absurd",
        "hundreds-of-parts", "overlapping", "past-the-end",
    ],
)  # fmt: skip
def test_hostile_range_headers(
    fault_stack: StackInfo, small_file: tuple[bytes, str], range_header: str, expect: int
) -> None:
    data, url = small_file

    response = _get(fault_stack, url, range_header)

    assert response.status_code == expect, response.text[:200]
    if expect == 200:
        assert response.content == data
    elif expect == 416:
        assert response.headers["Content-Range"] == f"bytes */{len(data)}"
    elif response.headers["Content-Type"].startswith("multipart/byteranges"):
        assert data[0:151] in response.content or data[0:101] in response.content
    else:
        first, last = map(
            int, response.headers["Content-Range"].split()[1].split("/")[0].split("-")
        )
        assert response.content == data[first : last + 1]
