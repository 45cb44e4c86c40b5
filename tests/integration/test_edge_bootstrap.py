"""``python -m edge_node`` as the local stack runs it: a real subprocess that
generates its key and CSR, registers with a small in-test control plane (which
signs the CSR with a throwaway CA), serves HTTPS, heartbeats, does pulled work,
registers again when forgotten, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509

from edge_node.main import EdgeNode
from edge_node.manifest import Manifest
from edge_node.settings import EdgeSettings
from tests.helpers import https_session, wait_for, wait_for_async
from tests.integration.edge_fixtures import free_port
from tests.integration.edge_publishing import share_query
from tests.integration.fake_control_plane import (
    CHUNK,
    DATA,
    JOIN_TOKEN,
    REPO,
    FakeControlPlane,
    control_plane_over_moto,
    spawn_edge,
)


@pytest.fixture
def stack() -> Iterator[tuple[FakeControlPlane, Manifest]]:
    with control_plane_over_moto() as made:
        yield made


def test_python_m_edge_node_lifecycle(
    tmp_path: Path, stack: tuple[FakeControlPlane, Manifest]
) -> None:
    control_plane, manifest = stack
    port = free_port()
    http_port = free_port()
    env = {
        **os.environ,
        "FSNODE_API_URL": control_plane.url,
        "FSNODE_JOIN_TOKEN": JOIN_TOKEN,
        "FSNODE_EDGE_HOST": "127.0.0.1",
        "FSNODE_EDGE_PORT": str(port),
        "FSNODE_EDGE_HTTP_PORT": str(http_port),
        "FSNODE_STATE_DIR": str(tmp_path / "state"),
        "FSNODE_CACHE_MAX_BYTES": str(10 * 1024 * 1024),
        "FSNODE_REGION": "local",
        "FSNODE_CAPACITY_BYTES": str(10 * 1024 * 1024),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_node"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        ready = ""
        deadline = time.monotonic() + 30
        while not ready.startswith("edge ready "):
            assert process.poll() is None, "".join(log)
            assert time.monotonic() < deadline, "".join(log)
            try:
                ready = lines.get(timeout=0.5)
            except queue.Empty:
                continue
        assert ready.strip() == f"edge ready node_id=node-1 url=https://127.0.0.1:{port}"
        registration = control_plane.registrations[0]
        assert registration["endpoint"] == f"https://127.0.0.1:{port}"
        assert registration["capacity_bytes"] == 10 * 1024 * 1024
        assert (tmp_path / "state" / "node.key").stat().st_mode & 0o777 == 0o600

        with https_session(tmp_path / "state" / "root.crt") as http:
            assert http.get(f"https://127.0.0.1:{port}/healthz").json()["ok"] is True
            assert http.get(f"http://127.0.0.1:{http_port}/healthz").json()["ok"] is True
            url = f"https://127.0.0.1:{port}/f/{manifest.file_id}"
            query = share_query(manifest.file_id, manifest.version)
            ranged = {"Range": f"bytes={CHUNK - 3}-{CHUNK + 2}"}
            answer = http.get(url, params=query, headers=ranged)
            assert answer.status_code == 206
            assert answer.content == DATA[CHUNK - 3 : CHUNK + 3]

        # Pulled work: warm chunk 2, report its SHA-256.
        wait_for(lambda: "w1" in control_plane.reports, "the warm report")
        assert control_plane.reports["w1"] == {"ok": True, "sha256": [manifest.chunks[2].sha256]}
        # The control plane forgot the node after that report: it must register again.
        wait_for(lambda: len(control_plane.registrations) >= 2, "re-registration")
        # A beat built while the warm work ran may still say 0: wait for one after it.
        wait_for(
            lambda: (
                control_plane.known
                and any(beat["used_bytes"] > 0 for beat in control_plane.heartbeats)
            ),
            "a heartbeat with the cache's bytes",
        )
        # Free bytes are real: under the cap and above the disk's free floor.
        assert 0 < control_plane.heartbeats[-1]["free_bytes"] <= 10 * 1024 * 1024
        # Forgotten: a replay of the first key would bring the rejected node back, so
        # the edge registered with a new key, stored before it was sent.
        first_key, second_key = (r["idempotency_key"] for r in control_plane.registrations[:2])
        assert first_key != second_key
        assert (tmp_path / "state" / "register.key").read_text() == second_key

        # Graceful stop: a response under way when SIGTERM arrives still completes.
        with https_session(tmp_path / "state" / "root.crt") as http:
            with http.get(url, params=query, stream=True) as answer:
                first = answer.raw.read(CHUNK)
                process.send_signal(signal.SIGTERM)
                rest = answer.raw.read()
            assert first + rest == DATA
        assert process.wait(timeout=30) == 0, "".join(log)
        print("".join(log))  # the edge's own log, shown with pytest -s
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def served_serial(port: int, ca_file: Path) -> int:
    """The serial number of the certificate a new TLS handshake gets."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock,
    ):
        der = tls_sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def serial_of(pem: str) -> int:
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def test_certificate_renewal_keeps_open_streams_and_shutdown_is_bounded(
    tmp_path: Path, stack: tuple[FakeControlPlane, Manifest]
) -> None:
    control_plane, manifest = stack
    control_plane.work_sent = True  # no pulled work in this test
    control_plane.forget_after_report = False
    control_plane.renew_lifetime = dt.timedelta(seconds=6)
    port = free_port()
    state = tmp_path / "state"
    env = {
        **os.environ,
        "FSNODE_API_URL": control_plane.url,
        "FSNODE_JOIN_TOKEN": JOIN_TOKEN,
        "FSNODE_EDGE_HOST": "127.0.0.1",
        "FSNODE_EDGE_PORT": str(port),
        "FSNODE_STATE_DIR": str(state),
        "FSNODE_CERT_RENEW_MARGIN_SECONDS": "1",
        "FSNODE_SHUTDOWN_GRACE_SECONDS": "1",
    }
    process, log = spawn_edge(env)
    try:
        wait_for(lambda: any(line.startswith("edge ready ") for line in log), "edge ready")
        ca_file = state / "root.crt"
        original = served_serial(port, ca_file)
        with https_session(ca_file) as http:
            url = f"https://127.0.0.1:{port}/f/{manifest.file_id}"
            query = share_query(manifest.file_id, manifest.version)
            with http.get(url, params=query, stream=True) as answer:
                first = answer.raw.read(CHUNK)
                # SIGHUP: renew now. A new key and CSR go to the renew route.
                process.send_signal(signal.SIGHUP)
                wait_for(lambda: len(control_plane.renewals) >= 1, "the renew call")
                renewed = serial_of(control_plane.renewed_certificates[0])
                wait_for(lambda: served_serial(port, ca_file) == renewed, "the new certificate")
                assert renewed != original
                # The stream opened under the old certificate finishes untouched.
                rest = answer.raw.read()
            assert first + rest == DATA
        new_csr = x509.load_pem_x509_csr(control_plane.renewals[0]["csr"].encode())
        old_csr = x509.load_pem_x509_csr(control_plane.registrations[0]["csr"].encode())
        assert new_csr.public_key() != old_csr.public_key()  # a fresh key, not a re-sign
        # The renewed certificate lives 6 s: the schedule (2/3 of it) renews again alone.
        wait_for(lambda: len(control_plane.renewals) >= 2, "the scheduled renewal")

        # Shutdown is bounded: a client that stops reading does not keep the node up
        # past FSNODE_SHUTDOWN_GRACE_SECONDS, and no new connection is taken meanwhile.
        with (
            https_session(ca_file) as http,
            http.get(url, params=query, stream=True) as stalled,
        ):
            assert stalled.raw.read(1024) == DATA[:1024]
            process.send_signal(signal.SIGTERM)
            wait_for(lambda: not accepts(port), "the listener to close")
            assert process.wait(timeout=30) == 0, "".join(log)
            with pytest.raises(requests.exceptions.RequestException):
                b"".join(stalled.iter_content(CHUNK))
                pytest.fail("a cut stream was delivered as complete")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_a_failed_renewal_is_retried_with_backoff(
    tmp_path: Path, stack: tuple[FakeControlPlane, Manifest]
) -> None:
    control_plane, _manifest = stack
    control_plane.fail_renewals = 1
    settings = EdgeSettings.from_env(
        {
            "FSNODE_API_URL": control_plane.url,
            "FSNODE_JOIN_TOKEN": JOIN_TOKEN,
            "FSNODE_EDGE_PORT": str(free_port()),
            "FSNODE_STATE_DIR": str(tmp_path / "state"),
        }
    )

    async def scenario() -> int:
        node = EdgeNode(settings)
        stop = asyncio.Event()
        try:
            await node.register()
            task = asyncio.create_task(node.renew_forever(stop))
            node.request_renewal()  # as SIGHUP does; the control plane answers 503 once
            await wait_for_async(lambda: node.renewals, "the retried renewal")
            stop.set()
            await task
            return node.renewals
        finally:
            await node.client.close()
            await node.origin.close()

    assert asyncio.run(scenario()) == 1
    assert control_plane.renew_calls == 2  # the failure, then the retry that worked


def test_health_and_metrics_move_to_the_admin_port_when_one_is_set(
    tmp_path: Path, stack: tuple[FakeControlPlane, Manifest]
) -> None:
    """Deployed edges keep /healthz and /metrics off the port players reach (the load
    balancer and scrapers use FSNODE_EDGE_ADMIN_PORT, which the security group keeps
    to the VPC)."""
    control_plane, _ = stack
    port, admin_port = free_port(), free_port()
    env = {
        **os.environ,
        "FSNODE_API_URL": control_plane.url,
        "FSNODE_JOIN_TOKEN": JOIN_TOKEN,
        "FSNODE_EDGE_HOST": "127.0.0.1",
        "FSNODE_EDGE_PORT": str(port),
        "FSNODE_EDGE_ADMIN_PORT": str(admin_port),
        "FSNODE_STATE_DIR": str(tmp_path / "state"),
        "FSNODE_REGION": "local",
        "FSNODE_CACHE_MAX_BYTES": str(10 * 1024 * 1024),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_node"], cwd=REPO, env=env, stderr=subprocess.DEVNULL
    )
    try:
        with https_session(tmp_path / "state" / "root.crt") as http:

            def admin_answers() -> bool:
                assert process.poll() is None
                try:
                    return (
                        http.get(f"http://127.0.0.1:{admin_port}/healthz", timeout=2).json()["ok"]
                        is True
                    )
                except requests.ConnectionError:
                    return False

            wait_for(admin_answers, "the admin port")
            metrics = http.get(f"http://127.0.0.1:{admin_port}/metrics", timeout=5)
            assert metrics.status_code == 200 and "fsnode" in metrics.text
            for path in ("/healthz", "/metrics"):
                public = http.get(f"https://127.0.0.1:{port}{path}", timeout=5)
                assert public.status_code == 404, (path, public.text)
    finally:
        process.terminate()
        process.wait(timeout=30)
