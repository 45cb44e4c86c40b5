"""Replication, prune and garbage collection on a real local stack: real edges pull their
work, Step Functions runs the ASL through moto's interpreter, and prune runs on its own
schedule (every second here).

One stack for the module: three edges, small chunks, a short heartbeat timeout, and
edge-3 set to fail the first three warm attempts of every chunk
(``FSNODE_FAULT_WARM_FAILURES``): one attempt and the state machine's two retries, so a
batch placed on edge-3 first is always moved to another node. Files are placed by
choosing, among fresh upload ids, one whose placement order suits the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from fsnode_core.models import NODE_DEAD

from fsnode.localstack.stack import StackInfo
from tests.e2e.cluster import PATIENCE, Cluster
from tests.e2e.conftest import own_stack, run_cli
from tests.helpers import wait_for

CHUNK = 256 * 1024
SIZE = 2 * CHUNK + 12345  # three chunks, the last one short
HEARTBEAT_TIMEOUT = 8  # s; an edge stopped for less than this only looks offline
FAULTY = 2  # edge-3
WARM_ATTEMPTS = 3  # WarmBatch's first try and its two retries on one node
FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


@pytest.fixture(scope="module")
def wf_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    settings = {
        "FSNODE_WARM_TIMEOUT": "30",
        "FSNODE_EVICT_TIMEOUT": "2",
        "FSNODE_GC_RETRY_WAIT": "1",
        "FSNODE_GC_MAX_WAIT": "120",
        "FSNODE_HOT_REPLICATION_WINDOW": "2",
        # Collected at once: the grace period's own tests are in test_cli_folders.
        "FSNODE_RETIRE_GRACE_SECONDS": "0",
    }
    with own_stack(
        tmp_path_factory, "workflow-stack", "--nodes", "3",
        "--heartbeat-interval", "1", "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT),
        "--schedule-seconds", "1", "--chunk-size", str(CHUNK),
        *[arg for name, value in settings.items() for arg in ("--env", f"{name}={value}")],
        "--edge-env-for", f"edge-{FAULTY + 1}:FSNODE_FAULT_WARM_FAILURES={WARM_ATTEMPTS}",
    ) as info:  # fmt: skip
        yield info


@pytest.fixture(scope="module")
def cluster(wf_stack: StackInfo) -> Cluster:
    launch = json.loads((Path(wf_stack.state_dir) / "launch" / "api.json").read_text())
    return Cluster(
        stack=wf_stack, env=dict(launch["env"]), chunk=CHUNK, heartbeat_timeout=HEARTBEAT_TIMEOUT
    )


def _warm_failures(cluster: Cluster, file_id: str) -> list[dict[str, Any]]:
    """The control plane's log of a file's failed warms, in order: each batch runs as a
    child execution, whose history is not the parent's, so the retries and moves are
    read where ``pick_replica_target`` logs them (the Lambdas log into ``aws.log``)."""
    log = Path(cluster.stack.state_dir) / "logs" / "aws.log"
    entries = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"warm failed' in line:
            entry = json.loads(line)
            if entry.get("file_id") == file_id:
                entries.append(entry)
    return entries


def _verify_replicas(
    cluster: Cluster, file_id: str, data: bytes, holders: dict[int, set[str]]
) -> None:
    """Each holder keeps the chunk's exact bytes on disk and serves them over TLS."""
    plan = cluster.api("GET", f"/files/{file_id}/plan")
    assert plan.status_code == 200, plan.text
    query = plan.json()["edge_query"]
    edges = StackInfo.load(Path(cluster.stack.state_dir)).edges
    for index, nodes in holders.items():
        expected = data[index * CHUNK : (index + 1) * CHUNK]
        for node_id in nodes:
            at = cluster.edge_index(node_id)
            assert cluster.cached_chunks(at, file_id).get(index) == expected
            first, last = index * CHUNK, index * CHUNK + len(expected) - 1
            answer = requests.get(
                f"{edges[at].url}/f/{file_id}?{query}",
                headers={"Range": f"bytes={first}-{last}"},
                verify=cluster.stack.ca_cert,
                timeout=60,
            )
            assert answer.status_code == 206 and answer.content == expected


def _fully_replicated(cluster: Cluster, file_id: str) -> dict[int, set[str]] | None:
    holders = cluster.holders(file_id)
    return holders if all(len(nodes) >= 2 for nodes in holders.values()) else None


@dataclass
class Placed:
    file_id: str
    version: str
    data: bytes
    execution: dict[str, Any]


@pytest.fixture(scope="module")
def moved_file(cluster: Cluster) -> Placed:
    """A file whose first placement choice is the failing edge, after its upload's
    replication has finished."""
    data = os.urandom(SIZE)
    faulty = cluster.node_id(FAULTY)
    file_id, version = cluster.upload(data, lambda order: order[0] == faulty)
    execution = cluster.finished(
        cluster.execution_arn("replicate", f"replicate-{file_id}-{version}")
    )
    return Placed(file_id, version, data, execution)


def test_failed_warms_retry_on_the_same_edge_then_move(
    cluster: Cluster, moved_file: Placed
) -> None:
    faulty = cluster.node_id(FAULTY)
    execution = moved_file.execution
    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["output"])["under_replicated"] == []
    # The file's three chunks are one batch: one attempt on edge-3 and two retries after
    # their backoff (1 s, then 2 s), each a new work item; then the batch moved on.
    failures = _warm_failures(cluster, moved_file.file_id)
    assert [(f["node_id"], f["attempts"], f.get("wait_seconds")) for f in failures] == [
        (faulty, 1, 1),
        (faulty, 2, 2),
        (faulty, 3, None),
    ], failures
    assert [f["message"] for f in failures][-1] == "warm failed: the batch moves on"
    assert {f["failure"] for f in failures} == {"WarmFailed"}
    # Every chunk is on two healthy edges, verified byte for byte.
    holders = cluster.holders(moved_file.file_id)
    healthy = {cluster.node_id(0), cluster.node_id(1)}
    assert holders == {index: healthy for index in (0, 1, 2)}
    _verify_replicas(cluster, moved_file.file_id, moved_file.data, holders)


def test_hot_file_reported_in_heartbeats_is_replicated(cluster: Cluster) -> None:
    # Six chunks: upload completion warms the first four; the rest only become
    # replicated because the edges holding the first ones report the file hot.
    data = os.urandom(5 * CHUNK + 999)
    faulty = cluster.node_id(FAULTY)
    file_id, version = cluster.upload(data, lambda order: order[-1] == faulty)
    upload = cluster.finished(cluster.execution_arn("replicate", f"replicate-{file_id}-{version}"))
    assert upload["status"] == "SUCCEEDED", upload

    holders = wait_for(
        lambda: _fully_replicated(cluster, file_id), "the hot chunks' copies", PATIENCE
    )

    hot = [
        json.loads(e["input"])["ranges"]
        for e in cluster.executions_for("replicate", file_id)
        if e["name"].startswith("replicate-hot-")
    ]
    assert [[4, 5]] in hot and all(ranges == [[4, 5]] for ranges in hot)
    assert len(holders) == 6
    _verify_replicas(cluster, file_id, data, holders)
    # Collected while later tests run, so the edge killed last holds only its own file.
    assert cluster.api("DELETE", f"/files/{file_id}").status_code == 202


def _edge_holds_nothing_of(cluster: Cluster, file_id: str) -> bool:
    return all(not cluster.cached_chunks(i, file_id) for i in range(3))


def _assert_collected(cluster: Cluster, file_id: str, version: str, share_url: str) -> None:
    s3 = cluster.client("s3")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=cluster.stack.bucket, Key=f"files/{file_id}/{version}")
    view = cluster.catalog.file_view(file_id)
    assert (view.meta, view.upload, view.replicas) == (None, None, [])
    assert requests.get(share_url, allow_redirects=False, timeout=30).status_code in (404, 410)
    assert _edge_holds_nothing_of(cluster, file_id)


def _replicated_uploads(cluster: Cluster, count: int) -> list[tuple[str, str, dict[int, set[str]]]]:
    """Files on the two healthy edges (the failing one last in their placement)."""
    faulty = cluster.node_id(FAULTY)
    files = [
        cluster.upload(os.urandom(SIZE), lambda order: order[-1] == faulty) for _ in range(count)
    ]
    out = []
    for file_id, version in files:
        execution = cluster.finished(
            cluster.execution_arn("replicate", f"replicate-{file_id}-{version}")
        )
        assert execution["status"] == "SUCCEEDED", execution
        holders = cluster.holders(file_id)
        assert all(len(nodes) == 2 for nodes in holders.values()), holders
        out.append((file_id, version, holders))
    return out


def _share(cluster: Cluster, file_id: str) -> str:
    answer = cluster.api("POST", f"/files/{file_id}/share", {"ttl_seconds": 600})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["share_url"])


def test_delete_with_an_edge_down_finishes_when_it_returns(cluster: Cluster) -> None:
    [(file_id, version, holders)] = _replicated_uploads(cluster, 1)
    share_url = _share(cluster, file_id)
    away = cluster.edge_index(sorted(holders[0])[0])
    assert cluster.cached_chunks(away, file_id)
    state = cluster.stack.state_dir
    gc_arn = cluster.execution_arn("gc", f"gc-{file_id}-{version}")

    stopped = run_cli("local", "kill", f"edge-{away + 1}", "--signal", "STOP", "--state-dir", state)
    assert stopped.returncode == 0, stopped.stderr
    try:
        deleted = cluster.api("DELETE", f"/files/{file_id}")
        assert deleted.status_code == 202, deleted.text
        # Tombstoned first: the share stops working before anything is deleted.
        assert requests.get(share_url, allow_redirects=False, timeout=30).status_code == 410

        def waiting_for_the_edge() -> bool:
            # The evict sent to the stopped edge timed out; the node is checked next.
            return any(
                (e.get("stateEnteredEventDetails") or {}).get("name") == "CheckNode"
                for e in cluster.history(gc_arn)
            )

        wait_for(waiting_for_the_edge, "collection to wait for the stopped edge", PATIENCE)
    finally:
        resumed = run_cli(
            "local", "kill", f"edge-{away + 1}", "--signal", "CONT", "--state-dir", state
        )
        assert resumed.returncode == 0, resumed.stderr

    execution = cluster.finished(gc_arn)
    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    # The stopped edge evicted after it came back; nobody was given up on.
    assert output["evicted"] == sorted(holders[0])
    assert (output["abandoned"], output["dead_nodes"]) == ([], [])
    assert output["object_deleted"] is True
    _assert_collected(cluster, file_id, version, share_url)


_PRUNE_ONCE = """
import json, sys, time
from pathlib import Path
from fsnode.localstack.app_loader import load_functions_app
from fsnode.localstack.lambda_dispatch import LambdaContext

app = load_functions_app(Path(sys.argv[1]))
go = Path(sys.argv[2])
print("ready", file=sys.stderr, flush=True)
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.002)
event = {"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
         "account": "000000000000", "region": "local", "time": "2026-01-01T00:00:00Z",
         "resources": [], "detail": {}}
summary = app.prune(event, LambdaContext("prune", 512, 60))
print("SUMMARY " + json.dumps(summary), flush=True)  # the logger writes to stdout too
"""


def test_two_prune_runs_at_once_collect_an_expired_file_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    (expired_id, expired_version, _), (tombstoned_id, tombstoned_version, _) = _replicated_uploads(
        cluster, 2
    )
    share_url = _share(cluster, expired_id)
    go = tmp_path / "go"
    # Two prune functions of their own, ready to run on the same signal.
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _PRUNE_ONCE, str(FUNCTIONS), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **cluster.env},
        )
        for _ in range(2)
    ]
    try:
        for run in runs:
            assert run.stderr is not None
            while "ready" not in (line := run.stderr.readline()):
                assert line, "a prune process died before it was ready"
        # The expiry goes through the API (PATCH /files/ID; `fsnode expire` is tested in
        # test_cli_files). It must be in the future, so it is two seconds ahead (a CLI
        # process may take longer than that to start on a busy machine), and the runs
        # start once it has passed.
        at = int(time.time()) + 2
        patched = requests.patch(
            f"{cluster.stack.api}/files/{expired_id}",
            json={"expires_at": at},
            timeout=30,
            headers={"authorization": f"Bearer {cluster.stack.api_key}"},
        )
        assert patched.status_code == 200, patched.text
        record = patched.json()
        assert (record["expires_at"], record["version"]) == (at, expired_version)
        wait_for(lambda: time.time() > at, "the expiry to pass")
        # A tombstone whose collection never started (a DELETE that stopped half way).
        meta = cluster.catalog.get_file(tombstoned_id)
        assert meta is not None
        cluster.catalog.tombstone(meta, seq=meta.seq + 1, due=0, now=int(time.time()))
        go.touch()
        for run in runs:
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, err[-3000:]
            summary = [line for line in out.splitlines() if line.startswith("SUMMARY ")]
            assert set(json.loads(summary[-1].removeprefix("SUMMARY "))) >= {"collections"}
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()

    # The two runs (and the stack's own schedule) raced: one collection per file.
    for file_id, version in ((expired_id, expired_version), (tombstoned_id, tombstoned_version)):
        started = cluster.executions_for("gc", file_id)
        assert [e["name"] for e in started] == [f"gc-{file_id}-{version}"]
        execution = cluster.finished(started[0]["executionArn"])
        assert execution["status"] == "SUCCEEDED", execution
        assert json.loads(execution["output"])["abandoned"] == []
    _assert_collected(cluster, expired_id, expired_version, share_url)
    assert _edge_holds_nothing_of(cluster, tombstoned_id)


def test_a_killed_edge_is_replaced_within_a_few_prune_cycles(
    cluster: Cluster, moved_file: Placed
) -> None:
    # Last in the module: the killed edge stays dead.
    file_id = moved_file.file_id
    before = cluster.holders(file_id)
    victim = sorted(before[0])[0]
    faulty = cluster.node_id(FAULTY)
    assert faulty not in set().union(*before.values())  # it failed and was moved off

    killed = run_cli(
        "local",
        "kill",
        f"edge-{cluster.edge_index(victim) + 1}",
        "--state-dir",
        cluster.stack.state_dir,
    )
    assert killed.returncode == 0, killed.stderr

    def declared_dead() -> bool:
        node = cluster.registry.get(victim)
        return node is not None and node.status == NODE_DEAD

    wait_for(declared_dead, "prune to declare the killed edge dead", PATIENCE)
    holders = wait_for(
        lambda: _fully_replicated(cluster, file_id), "every chunk on two live edges again", PATIENCE
    )
    assert all(victim not in nodes and faulty in nodes for nodes in holders.values())
    # Pruned every second, yet one loss execution for this file and the dead node.
    loss = [
        e
        for e in cluster.executions_for("replicate", file_id)
        if e["name"].startswith("replicate-loss-")
    ]
    assert len(loss) == 1
    assert cluster.finished(loss[0]["executionArn"])["status"] == "SUCCEEDED"
    assert cluster.catalog.replicas_on_node(victim) == []
    _verify_replicas(cluster, file_id, moved_file.data, holders)
