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
from typing import Any

import boto3
import pytest
import requests
from aiohttp import web
from cryptography import x509

from edge_node.main import EdgeNode
from edge_node.manifests import Manifest
from edge_node.settings import EdgeSettings
from tests.helpers import wait_for, wait_for_async
from tests.integration.edge_fixtures import (
    ThrowawayCA,
    free_port,
    moto_s3,
    put_file,
    share_public_keys,
    share_query,
)

REPO = Path(__file__).resolve().parents[2]
BUCKET = "fsnode-edge-boot"
CHUNK = 256 * 1024
JOIN_TOKEN = "join-me"
# Big enough that a full GET is still being sent when SIGTERM arrives.
DATA = os.urandom(32 * CHUNK + 777)


class FakeControlPlane:
    """The node routes of docs/PROTOCOL.md, enough for one edge, on a real port."""

    def __init__(self, ca: ThrowawayCA, manifest: Manifest) -> None:
        self.ca = ca
        self.manifest = manifest
        self.registrations: list[dict[str, Any]] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.reports: dict[str, dict[str, Any]] = {}
        self.known = False
        self.work_sent = False
        self.forget_after_report = True
        self.renewals: list[dict[str, Any]] = []
        self.renewed_certificates: list[str] = []
        # Lifetime of certificates from the renew route; renewals are not backdated,
        # so the edge's schedule (2/3 of the lifetime) is measured from now.
        self.renew_lifetime = dt.timedelta(days=1)
        self.renew_calls = 0
        self.fail_renewals = 0  # answer this many renew calls with a 503 first
        # The public certificate bundle heartbeats announce by serial (issue 19), if any.
        self.public_bundle: dict[str, Any] | None = None
        # "dead" or "drained": heartbeats answer 410 with that reason until a register.
        self.verdict: str | None = None
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/nodes/register", self.register)
        app.router.add_post("/nodes/{node_id}/heartbeat", self.heartbeat)
        app.router.add_post("/nodes/{node_id}/work/{work_id}", self.work)
        app.router.add_post("/nodes/{node_id}/renew", self.renew)
        app.router.add_get("/nodes/{node_id}/public-certificate", self.public_certificate)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def _authorized(self, request: web.Request) -> bool:
        return self.known and request.headers.get("Authorization") == "Bearer cred-1"

    @staticmethod
    def _error(status: int, code: str) -> web.Response:
        return web.json_response({"error": {"code": code, "message": code}}, status=status)

    async def register(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("join_token") != JOIN_TOKEN:
            return self._error(401, "unauthorized")
        self.registrations.append(body)
        self.known = True
        self.verdict = None
        return web.json_response(
            {
                "node_id": "node-1",
                "credential": "cred-1",
                "certificate": self.ca.sign_csr(body["csr"]),
                "certificate_chain": self.ca.pem,
                "root_certificate": self.ca.pem,
                "share_public_keys": share_public_keys(),
                "heartbeat_interval": 1,
                "chunk_size": CHUNK,
                "bucket": BUCKET,
            }
        )

    async def renew(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "unauthorized")
        self.renew_calls += 1
        if self.fail_renewals > 0:
            self.fail_renewals -= 1
            return self._error(503, "unavailable")
        body = await request.json()
        certificate = self.ca.sign_csr(
            body["csr"], lifetime=self.renew_lifetime, backdate=dt.timedelta(0)
        )
        self.renewals.append(body)
        self.renewed_certificates.append(certificate)
        return web.json_response(
            {
                "certificate": certificate,
                "certificate_chain": self.ca.pem,
                "root_certificate": self.ca.pem,
            }
        )

    async def heartbeat(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(404, "not_found")
        if self.verdict is not None:
            details = {"node_id": "node-1", "node_status": self.verdict}
            return web.json_response(
                {"error": {"code": "gone", "message": f"this node is {self.verdict}",
                           "details": {**details, "reason": f"node_{self.verdict}"}}},
                status=410,
            )  # fmt: skip
        self.heartbeats.append(await request.json())
        work = []
        if not self.work_sent:
            self.work_sent = True
            work = [
                {
                    "work_id": "w1",
                    "kind": "warm",
                    "file_id": self.manifest.file_id,
                    "version": self.manifest.version,
                    "chunk_index": 2,
                    "chunks": [2],
                }
            ]
        answer: dict[str, Any] = {
            "status": "active",
            "heartbeat_interval": 1,
            "share_public_keys": share_public_keys(),
            "work": work,
        }
        if self.public_bundle is not None:
            answer["public_certificate_serial"] = self.public_bundle["serial"]
        return web.json_response(answer)

    async def public_certificate(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "unauthorized")
        if self.public_bundle is None:
            return self._error(404, "not_found")
        return web.json_response(self.public_bundle)

    async def work(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "unauthorized")
        self.reports[request.match_info["work_id"]] = await request.json()
        if self.forget_after_report:
            # As if the node's record expired: the next heartbeat gets a 404.
            self.forget_after_report = False
            self.known = False
        return web.json_response({})


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[FakeControlPlane, Manifest]]:
    with moto_s3():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        manifest = put_file(BUCKET, DATA, CHUNK)
        control_plane = FakeControlPlane(ThrowawayCA(), manifest)
        control_plane.start()
        try:
            yield control_plane, manifest
        finally:
            control_plane.stop()


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

        with requests.Session() as http:
            http.trust_env = False
            http.verify = str(tmp_path / "state" / "root.crt")
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
        with requests.Session() as http:
            http.trust_env = False
            http.verify = str(tmp_path / "state" / "root.crt")
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


def spawn_edge(env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    """``python -m edge_node`` with ``env``; its log lines, collected as they come."""
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_node"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
    )
    log: list[str] = []

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return process, log


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
        with requests.Session() as http:
            http.trust_env = False
            http.verify = str(ca_file)
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
        with requests.Session() as http:
            http.trust_env = False
            http.verify = str(ca_file)
            with http.get(url, params=query, stream=True) as stalled:
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
        with requests.Session() as http:
            http.trust_env = False
            http.verify = str(tmp_path / "state" / "root.crt")

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
