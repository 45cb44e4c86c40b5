"""A small control plane for ``python -m edge_node`` tests: the node routes of
docs/PROTOCOL.md on a real port, signing CSRs with a throwaway CA, over a moto S3 that
holds one published file."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from aiohttp import web

from edge_node.manifest import Manifest
from tests.helpers import LoopThread
from tests.integration.edge_fixtures import ThrowawayCA, free_port, moto_s3
from tests.integration.edge_publishing import put_file, share_public_keys

REPO = Path(__file__).resolve().parents[2]
BUCKET = "fsnode-edge-boot"
CHUNK = 256 * 1024
JOIN_TOKEN = "join-me"
# Big enough that a full GET is still being sent when SIGTERM arrives.
DATA = os.urandom(32 * CHUNK + 777)


class FakeControlPlane(LoopThread):
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
        self._runner: web.AppRunner | None = None
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

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


@contextmanager
def control_plane_over_moto() -> Iterator[tuple[FakeControlPlane, Manifest]]:
    """A moto S3 holding ``DATA`` published, and the control plane for it, running."""
    with moto_s3():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        manifest = put_file(BUCKET, DATA, CHUNK)
        control_plane = FakeControlPlane(ThrowawayCA(), manifest)
        control_plane.start()
        try:
            yield control_plane, manifest
        finally:
            control_plane.stop()


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
