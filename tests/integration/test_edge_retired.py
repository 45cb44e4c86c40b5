"""``python -m edge_node`` told it is out of the fleet (issue 17.1): a node declared
dead while it is alive registers as a new node and serves again; a drained node
leaves: it stops, exit 0, and a later start will not replay the drained identity.
The control plane is the in-test one of test_edge_bootstrap, answering 410 with
``details.reason`` ``node_dead`` / ``node_drained`` as the real one does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from edge_node.manifest import Manifest
from tests.helpers import wait_for
from tests.integration.edge_fixtures import ThrowawayCA, free_port, moto_s3
from tests.integration.edge_publishing import put_file, share_query
from tests.integration.fake_control_plane import (
    BUCKET,
    CHUNK,
    DATA,
    JOIN_TOKEN,
    FakeControlPlane,
    spawn_edge,
)


@pytest.fixture(name="control_plane")
def control_plane_fixture() -> Iterator[tuple[FakeControlPlane, Manifest]]:
    with moto_s3():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        manifest = put_file(BUCKET, DATA, CHUNK)
        fake = FakeControlPlane(ThrowawayCA(), manifest)
        fake.work_sent = True  # no pulled work here
        fake.forget_after_report = False
        fake.start()
        try:
            yield fake, manifest
        finally:
            fake.stop()


def _ranged_get(port: int, state: Path, manifest: Manifest) -> int:
    with requests.Session() as http:
        http.trust_env = False
        http.verify = str(state / "root.crt")
        answer = http.get(
            f"https://127.0.0.1:{port}/f/{manifest.file_id}",
            params=share_query(manifest.file_id, manifest.version),
            headers={"Range": f"bytes={CHUNK}-{CHUNK + 9}"},
            timeout=30,
        )
        assert answer.content == DATA[CHUNK : CHUNK + 10] or answer.status_code != 206
        return answer.status_code


def test_a_dead_edge_registers_again_and_a_drained_one_leaves(
    tmp_path: Path, control_plane: tuple[FakeControlPlane, Manifest]
) -> None:
    fake, manifest = control_plane
    port = free_port()
    state = tmp_path / "state"
    env = {
        **os.environ,
        "FSNODE_API_URL": fake.url,
        "FSNODE_JOIN_TOKEN": JOIN_TOKEN,
        "FSNODE_EDGE_HOST": "127.0.0.1",
        "FSNODE_EDGE_PORT": str(port),
        "FSNODE_STATE_DIR": str(state),
        "FSNODE_SHUTDOWN_GRACE_SECONDS": "1",
    }
    process, log = spawn_edge(env)
    try:
        wait_for(lambda: any(line.startswith("edge ready ") for line in log), "edge ready")
        assert _ranged_get(port, state, manifest) == 206
        # Declared dead while alive: the next beat's 410 makes it register anew (a new
        # idempotency key: a replay would be the dead node), then beat and serve again.
        fake.verdict = "dead"
        wait_for(lambda: len(fake.registrations) == 2, "the registration anew")
        first, second = (r["idempotency_key"] for r in fake.registrations)
        assert first != second
        beats = len(fake.heartbeats)
        wait_for(lambda: len(fake.heartbeats) > beats, "a heartbeat as the new node")
        assert _ranged_get(port, state, manifest) == 206
        # Drained: it leaves the fleet and the process ends cleanly, registering nothing.
        fake.verdict = "drained"
        assert process.wait(timeout=60) == 0, "".join(log)
        assert any("leaving the fleet" in line for line in log), "".join(log)
        assert len(fake.registrations) == 2
        # A later start registers as a new node: the stored key is no longer the
        # drained registration's.
        assert (state / "register.key").read_text() not in (first, second)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
