"""Faults between the edges and S3, an edge killed mid-stream, a dead node coming back.

The stack here has two edges that reach S3 through ``OriginFaultProxy`` (``fsnode local
up --origin-url``), with short origin retry settings so a failing origin gives up in
seconds. Files are imported from objects the tests put in the bucket: an import warms
nothing, so the only origin reads are the ones a test causes. Prune never runs on its
own here (``--schedule-seconds 3600``): the tests decide when a node is declared dead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fsnode_core.nodes_store import NodeRegistry

from fsnode.localstack import processes
from fsnode.localstack.resources import LOCAL_CREDENTIALS
from fsnode.localstack.stack import StackInfo
from tests.e2e.conftest import FSNODE, cli_env, run_cli
from tests.e2e.edge_reads import (
    edge_base,
    edge_metric,
    edge_url_of,
    imported,
    raw_get,
    stack_client,
)
from tests.fixtures.origin_faults import Fault, OriginFaultProxy
from tests.helpers import wait_for

CHUNK = 4 * 1024 * 1024
ATTEMPTS = 3  # FSNODE_ORIGIN_ATTEMPTS of this stack's edges
EDGE_SETTINGS = {
    "FSNODE_ORIGIN_ATTEMPTS": str(ATTEMPTS),
    "FSNODE_ORIGIN_BUDGET_SECONDS": "4",
    "FSNODE_ORIGIN_READ_TIMEOUT": "1.5",
}


@pytest.fixture(scope="module")
def proxy() -> Iterator[OriginFaultProxy]:
    started = OriginFaultProxy().start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def origin_stack(
    tmp_path_factory: pytest.TempPathFactory, proxy: OriginFaultProxy
) -> Iterator[StackInfo]:
    state_dir = tmp_path_factory.mktemp("origin-fault-stack")
    settings = [
        arg
        for edge in ("edge-1", "edge-2")
        for name, value in EDGE_SETTINGS.items()
        for arg in ("--edge-env-for", f"{edge}:{name}={value}")
    ]
    up = run_cli(
        "local", "up", "--detach", "--nodes", "2", "--state-dir", str(state_dir),
        "--heartbeat-interval", "1", "--heartbeat-timeout", "5", "--schedule-seconds", "3600",
        "--origin-url", proxy.url, *settings, "--json",
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    info = StackInfo.load(state_dir)
    proxy.set_target(info.aws_endpoint)  # the edges reach S3 only once they serve
    try:
        yield info
    finally:
        proxy.clear()
        run_cli("local", "down", "--state-dir", str(state_dir))
        assert not [pid for pid in StackInfo.load(state_dir).pids() if processes.is_alive(pid)]


@pytest.fixture(autouse=True)
def _no_faults_left(proxy: OriginFaultProxy) -> Iterator[None]:
    yield
    proxy.clear()


def _wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    processes.wait_until(check, timeout, what)


# -- the origin failing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "origin_status", "status", "code"),
    [
        ("status", 500, 502, "origin_error"),
        ("reset", 0, 502, "origin_error"),
        ("stall", 0, 504, "origin_timeout"),
    ],
    ids=["500", "reset", "stall"],
)
def test_a_failing_origin_gets_bounded_retries_then_a_clean_json_error(
    origin_stack: StackInfo,
    proxy: OriginFaultProxy,
    kind: str,
    origin_status: int,
    status: int,
    code: str,
) -> None:
    key = f"failing/{kind}-{origin_status}.bin"
    data, _, share_url = imported(origin_stack, key, 300_000)
    url = edge_url_of(share_url)
    proxy.add(Fault(kind, key, status=origin_status))

    got, headers, body, complete = raw_get(origin_stack, url)

    assert (got, complete) == (status, True)
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == code
    tries = len(proxy.requests_for(key))
    # aiohttp itself sends an idempotent request once more when the connection drops
    # before an answer (RFC 9112 section 9.3.1), so a reset costs up to two requests a try.
    per_try = 2 if kind == "reset" else 1
    assert 2 <= tries <= per_try * ATTEMPTS, f"{tries} origin requests: retried, and bounded"
    # Nothing half-fetched was kept: once the origin heals, the bytes are right. (A
    # request that joins a fill still failing at the moment of healing may get one more
    # 502; what matters is that the first 200 carries exactly the object's bytes.)
    proxy.clear()

    def served() -> tuple[int, Any, bytes, bool] | None:
        answer = raw_get(origin_stack, url)
        return answer if answer[0] == 200 else None

    _, _, body, complete = wait_for(served, "the edge to serve once the origin healed")
    assert (complete, body == data) == (True, True)


def test_transient_origin_failures_are_retried_to_the_right_bytes(
    origin_stack: StackInfo, proxy: OriginFaultProxy
) -> None:
    key = "transient/object.bin"
    data, _, share_url = imported(origin_stack, key, 300_000)
    url = edge_url_of(share_url)
    retries = edge_metric(origin_stack, edge_base(url), "origin_retries_total")
    proxy.add(Fault("status", key, status=503, times=2))
    proxy.add(Fault("reset", key, after_bytes=50_000, times=1))

    got, _, body, complete = raw_get(origin_stack, url, "bytes=1000-")

    assert (got, complete, body == data[1000:]) == (206, True, True)
    assert edge_metric(origin_stack, edge_base(url), "origin_retries_total") - retries >= 3
    # The fill's first part starts at the reader's offset (1000); the reset came after
    # 50 000 bytes of it, so the read that finished that part asked only for the rest.
    ranges = [seen.range for seen in proxy.requests_for(key)]
    first_part_end = 1000 + 256 * 1024 - 1
    resumed = f"bytes=51000-{first_part_end}"
    assert resumed in ranges, ranges
    assert ranges.index(resumed) > ranges.index(f"bytes=1000-{first_part_end}"), ranges


@pytest.mark.parametrize("failure", ["reset", "stall"])
def test_an_origin_failing_mid_body_cuts_the_response_short(
    origin_stack: StackInfo, proxy: OriginFaultProxy, failure: str
) -> None:
    key = f"mid-body/{failure}.bin"
    data, _, share_url = imported(origin_stack, key, 300_000)
    url = edge_url_of(share_url)
    # The first read passes 100 000 bytes (the edge streams them on) and then fails;
    # every later read fails before any byte.
    first = proxy.add(Fault(failure, key, after_bytes=100_000, times=1))
    proxy.add(Fault("status", key, status=500) if failure == "reset" else Fault("stall", key))

    got, headers, body, complete = raw_get(origin_stack, url)

    assert first.triggered.is_set()
    assert got == 200 and int(headers["content-length"]) == len(data)
    assert not complete, "a body the origin failed under must not pass as complete"
    assert len(body) < len(data) and body == data[: len(body)]
    proxy.clear()
    again, _, body, complete = raw_get(origin_stack, url)
    assert (again, complete, body == data) == (200, True, True)


# -- an edge killed in the middle of a stream ------------------------------------------


def _cluster(stack: StackInfo) -> dict[str, dict[str, Any]]:
    return {node["node_id"]: node for node in stack_client(stack).cluster()["nodes"]}


def test_an_edge_killed_mid_stream_get_finishes_from_another_replica(
    origin_stack: StackInfo, proxy: OriginFaultProxy, tmp_path: Path
) -> None:
    state = origin_stack.state_dir
    key = "kill/movie.bin"
    tail = 100_000
    data, file_id, share_url = imported(origin_stack, key, 2 * CHUNK + tail)
    plan = stack_client(origin_stack).plan(file_id)
    victim_id = plan["nodes"][plan["chunks"][1]["replicas"][0]]["node_id"]
    index, victim = next((i, e) for i, e in enumerate(origin_stack.edges) if e.node_id == victim_id)
    # Placement ranks the same way for a share: before the kill it leads to the victim.
    assert edge_base(edge_url_of(share_url)) == victim.url
    served = edge_metric(origin_stack, victim.url, "bytes_served_total")
    # Chunk 1's first origin read (the fill's 256 KiB first part, at the reader's offset)
    # passes 128 KiB, then one byte at a time: the victim streams them on (no read
    # timeout fires), so the response stays open for the kill.
    slow = proxy.add(Fault("trickle", key, range_start=CHUNK, after_bytes=128 * 1024, times=1))
    out = tmp_path / "movie.out"
    get = subprocess.Popen(
        [*FSNODE, "get", file_id, "-o", str(out), "--edge-timeout", "60", "--json",
         "--state-dir", state],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    try:
        # Chunks 0 and 2 make CHUNK + tail bytes: anything past that is chunk 1's.
        _wait(
            lambda: (
                slow.triggered.is_set()
                and edge_metric(origin_stack, victim.url, "bytes_served_total") - served
                > CHUNK + tail
            ),
            "the victim to stream part of chunk 1",
        )
        killed = run_cli("local", "kill", f"edge-{index + 1}", "--state-dir", state)
        assert killed.returncode == 0, killed.stderr
        stdout, stderr = get.communicate(timeout=180)
    finally:
        slow.release.set()
        if get.poll() is None:
            get.kill()
            get.communicate()
    try:
        assert get.returncode == 0, stderr
        result = json.loads(stdout)
        assert out.read_bytes() == data
        assert result["failovers"] >= 1
        assert sum(result["sources"].values()) == result["chunks"] == 3

        # Once the heartbeat timeout has passed, the dead node is out of the live set
        # and new share redirects lead elsewhere.
        _wait(lambda: not _cluster(origin_stack)[victim_id]["live"], "the victim to go silent")
        fresh = stack_client(origin_stack).share(file_id, 600)["share_url"]
        for share in (share_url, fresh):
            url = edge_url_of(share)
            assert edge_base(url) != victim.url
            got, _, body, complete = raw_get(origin_stack, url, f"bytes={CHUNK}-")
            assert (got, complete, body == data[CHUNK:]) == (206, True, True)
    finally:
        restarted = run_cli("local", "restart", f"edge-{index + 1}", "--state-dir", state)
        assert restarted.returncode == 0, restarted.stderr
    _wait(lambda: _cluster(origin_stack)[victim_id]["live"], "the restarted victim to be live")


# -- a node declared dead comes back ---------------------------------------------------


def _nodes_table(stack: StackInfo) -> NodeRegistry:
    spec = json.loads((Path(stack.state_dir) / "launch" / "api.json").read_text())
    client = boto3.client(
        "dynamodb", endpoint_url=stack.aws_endpoint, region_name=stack.region, **LOCAL_CREDENTIALS
    )
    return NodeRegistry(spec["env"]["FSNODE_NODES_TABLE"], client=client)


def test_an_edge_declared_dead_registers_again(origin_stack: StackInfo) -> None:
    """Prune declares a node dead when it was silent past the timeout: after a control
    plane outage (its first run after the return can come before the edge's next
    heartbeat), a partition, or a frozen process. Here the process is frozen (SIGSTOP)
    while prune's verdict lands and a file it holds is deleted; thawed, the edge must
    come back as a new live node (a replay of its registration would be the dead one),
    once (no re-registration loop), still serving its cache, and the file deleted
    while it was away must not serve from its old manifest copy.
    """
    stack = StackInfo.load(Path(origin_stack.state_dir))  # a restart may have moved pids
    edge = stack.edges[1]
    kept, _, kept_share = imported(stack, "dead-node/kept.bin", 200_000)
    _, deleted_id, deleted_share = imported(stack, "dead-node/deleted.bin", 200_000)
    # Both read through this edge, so it holds their chunks and manifests.
    kept_url, deleted_url = (
        edge.url + url[len(edge_base(url)) :]
        for url in map(edge_url_of, (kept_share, deleted_share))
    )
    for url in (kept_url, deleted_url):
        got, _, _, complete = raw_get(stack, url)
        assert (got, complete) == (200, True)
    origin_bytes = edge_metric(stack, edge.url, "origin_bytes_total")
    log = Path(stack.state_dir) / "logs" / "edge-2.log"
    offset = log.stat().st_size
    registry = _nodes_table(stack)

    def declared_dead() -> bool:
        # Prune's own verdict (the same conditional write), without waiting for its
        # schedule. A beat sent just before the freeze may still land in between: then
        # the write fails, as prune's would, and is tried again.
        node = registry.get(edge.node_id)
        assert node is not None
        return registry.mark_dead(edge.node_id, node.last_heartbeat)

    os.killpg(edge.pid, signal.SIGSTOP)  # the node agent and its workers
    try:
        _wait(declared_dead, "the frozen edge to be declared dead", 30)
        stack_client(stack).delete(deleted_id)
    finally:
        os.killpg(edge.pid, signal.SIGCONT)

    def reregistered() -> list[str]:
        with log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
        messages = [
            json.loads(line)["message"] for line in text.splitlines() if line.startswith("{")
        ]
        return [
            message.rsplit("node_id=", 1)[1].strip()
            for message in messages
            if "registered again" in message
        ]

    _wait(lambda: bool(reregistered()), "the edge to register again")
    node_id = reregistered()[0]
    assert node_id != edge.node_id

    # A new identity is pending until a heartbeat's probe sees its endpoint serve it.
    def placed() -> bool:
        record = registry.get(node_id)
        return record is not None and record.status == "active"

    _wait(placed, "the edge's new identity to prove its endpoint and be placed")
    _wait(lambda: _cluster(stack).get(node_id, {}).get("live") is True, "live again", 30)
    dead = registry.get(edge.node_id)
    assert dead is None or dead.status == "dead"

    # The cache outlives the identity: same bytes, none of them from the origin.
    got, _, body, complete = raw_get(stack, kept_url)
    assert (got, complete, body == kept) == (200, True, True)
    assert edge_metric(stack, edge.url, "origin_bytes_total") == origin_bytes
    # The evict for the deleted file was addressed to the dead identity; the edge
    # checks its manifest copies again after registering, so the file does not serve:
    # 410 while the file is tombstoned, 404 once its collection has removed the record.
    got, headers, body, _ = raw_get(stack, deleted_url)
    assert got in (404, 410), (got, body[:200])
    assert headers["content-type"].startswith("application/json")
    # Heartbeats go on under the new identity, with no further re-registration.
    beats = _cluster(stack)[node_id]["last_heartbeat"]
    _wait(lambda: _cluster(stack)[node_id]["last_heartbeat"] > beats, "a later heartbeat", 30)
    assert len(reregistered()) == 1, reregistered()
