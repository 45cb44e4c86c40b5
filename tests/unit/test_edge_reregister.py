"""An edge the control plane no longer accepts (forgotten, or declared dead).

The heartbeat loop re-registers and then backs off with jitter (never a tight loop),
and a re-registration for that reason sends a fresh idempotency key, stored before
it is sent, while a plain restart sends the stored one (the control plane replays
the same node). The control plane is faked at the client's methods; keys,
certificates and the state dir are real.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from fsnode_core.errors import (
    IDEMPOTENCY_KEY_REUSED,
    NODE_DEAD_REASON,
    NODE_DRAINED_REASON,
    FsnodeError,
    Gone,
    NotFound,
    Unauthorized,
    Unavailable,
)

from edge_node import registration_key
from edge_node.cache import ChunkCache
from edge_node.control_plane import ControlPlaneClient, Registration
from edge_node.heartbeat import HeartbeatLoop
from edge_node.main import EdgeNode
from edge_node.manifests import ManifestStore
from edge_node.settings import EdgeSettings
from edge_node.shares import ShareKeys
from tests.integration.edge_fixtures import ThrowawayCA
from tests.integration.edge_publishing import share_public_keys

# -- the heartbeat loop ------------------------------------------------------------


class ScriptedClient:
    """Heartbeat answers in order: an exception to raise, or a status to answer with."""

    node_id = "node-1"

    def __init__(self, script: list[FsnodeError | str]) -> None:
        self.script = script
        self.beats = 0

    async def heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        step = self.script[min(self.beats, len(self.script) - 1)]
        self.beats += 1
        if isinstance(step, FsnodeError):
            raise step
        return {"status": step, "heartbeat_interval": 1, "work": []}


class QuietCache:
    used_bytes = 0
    free_bytes = 1
    inflight = 0

    async def refresh(self) -> None:
        return None

    async def node_load(self) -> int:
        return 0

    async def hot_files(self) -> list[str]:
        return []


def run_loop(
    script: list[FsnodeError | str], *, beats: int, reregister_fails: bool = False
) -> tuple[list[float], int]:
    """Run the real loop for ``beats`` beats; the pauses it chose and re-registrations."""
    client = ScriptedClient(script)
    delays: list[float] = []
    reregistrations = 0

    async def reregister(rejected: str | None) -> None:
        nonlocal reregistrations
        assert rejected == "node-1"
        reregistrations += 1
        if reregister_fails:
            raise Unavailable("control plane down")

    async def pause(stop: asyncio.Event, delay: float) -> None:
        delays.append(delay)
        if len(delays) >= beats:
            stop.set()

    # Fakes for what a beat touches; the manifests and keys are never reached.
    loop = HeartbeatLoop(
        client=cast(ControlPlaneClient, client), cache=cast(ChunkCache, QuietCache()),
        manifests=cast(ManifestStore, None), keys=cast(ShareKeys, None),
        metrics=type("M", (), {"requests_in_flight": 0})(),
        capacity_bytes=1, interval=1.0, reregister=reregister, pause=pause,
    )  # fmt: skip
    asyncio.run(loop.run(asyncio.Event()))
    return delays, reregistrations


@pytest.fixture
def ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jitter pinned to the top of its range, so the growth shows."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)


@pytest.mark.usefixtures("ceiling")
@pytest.mark.parametrize(
    "rejection",
    [
        NotFound("node is dead"),
        Unauthorized("who?"),
        Gone("declared dead", reason=NODE_DEAD_REASON),
        "dead",
    ],
)
def test_a_rejected_node_re_registers_then_backs_off(rejection: FsnodeError | str) -> None:
    delays, reregistrations = run_loop([rejection], beats=8)
    assert reregistrations == 8
    # Doubling from two intervals, capped at a minute: never 0, never a spin.
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


@pytest.mark.parametrize("verdict", [Gone("drained", reason=NODE_DRAINED_REASON), "drained"])
def test_a_drained_node_leaves_instead_of_registering_again(verdict: FsnodeError | str) -> None:
    client = ScriptedClient(["active", verdict])
    left: list[str] = []

    async def reregister(rejected: str | None) -> None:
        raise AssertionError("a drained node must not register again")

    async def on_drained() -> None:
        left.append("left")

    async def pause(stop: asyncio.Event, delay: float) -> None:
        return None

    # Fakes for what a beat touches; the manifests and keys are never reached.
    loop = HeartbeatLoop(
        client=cast(ControlPlaneClient, client), cache=cast(ChunkCache, QuietCache()),
        manifests=cast(ManifestStore, None), keys=cast(ShareKeys, None),
        metrics=type("M", (), {"requests_in_flight": 0})(),
        capacity_bytes=1, interval=1.0, reregister=reregister, pause=pause,
        on_drained=on_drained,
    )  # fmt: skip
    stop = asyncio.Event()
    asyncio.run(loop.run(stop))  # returns by itself
    assert stop.is_set() and left == ["left"] and client.beats == 2
    assert loop.status == "drained"


@pytest.mark.usefixtures("ceiling")
def test_a_beat_that_works_resets_the_backoff() -> None:
    gone = NotFound("node is dead")
    delays, reregistrations = run_loop([gone, gone, "active", gone, "active"], beats=5)
    assert reregistrations == 3
    assert delays == [2.0, 4.0, 1.0, 2.0, 1.0]


@pytest.mark.usefixtures("ceiling")
def test_a_failed_re_registration_backs_off_too() -> None:
    delays, reregistrations = run_loop([NotFound("forgotten")], beats=3, reregister_fails=True)
    assert (delays, reregistrations) == ([2.0, 4.0, 8.0], 3)


def test_the_pause_after_a_re_registration_is_jittered(monkeypatch: pytest.MonkeyPatch) -> None:
    ranges: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        ranges.append((low, high))
        return low

    monkeypatch.setattr(random, "uniform", uniform)
    delays, _ = run_loop([NotFound("node is dead")], beats=3)
    assert ranges == [(0.5, 2.0), (0.5, 4.0), (0.5, 8.0)]
    assert delays == [0.5, 0.5, 0.5]  # even the shortest draw is half an interval


# -- the idempotency key -----------------------------------------------------------


class FakeRegister:
    """``ControlPlaneClient.register`` answering with a real certificate, recording the
    key each call sent and the key stored on disk at that moment."""

    def __init__(self, ca: ThrowawayCA, state_dir: Path) -> None:
        self.ca = ca
        self.state_dir = state_dir
        self.sent: list[str] = []
        self.stored_when_sent: list[str] = []
        self.fail_next = False

    async def __call__(self, body: dict[str, Any]) -> Registration:
        self.sent.append(body["idempotency_key"])
        self.stored_when_sent.append((self.state_dir / registration_key.KEY_FILE).read_text())
        if self.fail_next:
            self.fail_next = False
            raise Unavailable("the answer was lost")
        return Registration(
            node_id=f"node-{len(set(self.sent))}", credential="cred",
            certificate=self.ca.sign_csr(body["csr"]), certificate_chain=self.ca.pem,
            root_certificate=self.ca.pem, share_public_keys=share_public_keys(),
            heartbeat_interval=1, chunk_size=1024, bucket="b",
        )  # fmt: skip


@pytest.fixture(scope="module")
def ca() -> ThrowawayCA:
    return ThrowawayCA()


@pytest.fixture
def settings(tmp_path: Path) -> EdgeSettings:
    return EdgeSettings.from_env({
        "FSNODE_API_URL": "http://127.0.0.1:9", "FSNODE_JOIN_TOKEN": "join",
        "FSNODE_EDGE_PORT": "8443", "FSNODE_STATE_DIR": str(tmp_path / "state"),
    })  # fmt: skip


@pytest.fixture
def fake(ca: ThrowawayCA, settings: EdgeSettings) -> Iterator[FakeRegister]:
    yield FakeRegister(ca, settings.state_dir)


def edge(settings: EdgeSettings, fake: FakeRegister) -> EdgeNode:
    node = EdgeNode(settings)
    node.client.register = fake  # type: ignore[method-assign]
    return node


async def close(node: EdgeNode) -> None:
    await node.client.close()
    await node.origin.close()


def test_a_restart_sends_the_stored_key(settings: EdgeSettings, fake: FakeRegister) -> None:
    async def scenario() -> list[str]:
        ids = []
        for _ in range(2):  # two processes on one state dir
            node = edge(settings, fake)
            ids.append((await node.register()).node_id)
            await close(node)
        return ids

    assert asyncio.run(scenario()) == ["node-1", "node-1"]
    assert fake.sent[0] == fake.sent[1] == registration_key.current(settings.state_dir)


def test_a_rejected_node_registers_anew_with_a_key_stored_before_it_is_sent(
    settings: EdgeSettings, fake: FakeRegister
) -> None:
    async def scenario() -> None:
        node = edge(settings, fake)
        distrusted: list[bool] = []
        node.manifests.distrust_all = lambda: distrusted.append(True)  # type: ignore[method-assign]
        try:
            await node.register()
            assert (await node.reregister()).node_id == "node-2"
            assert distrusted == [True]
            # The next rejection rotates again; when that call's answer is lost, the
            # retry sends the same new key (the control plane replays it if it landed).
            fake.fail_next = True
            with pytest.raises(Unavailable):
                await node.reregister()
            assert (await node.reregister()).node_id == "node-3"
            assert distrusted == [True, True]
        finally:
            await close(node)

    asyncio.run(scenario())
    first, second, third, retry = fake.sent
    assert len({first, second, third}) == 3 and retry == third
    # Every key was on disk before it went out: a crash cannot bring an old one back.
    assert fake.stored_when_sent == fake.sent
    assert registration_key.current(settings.state_dir) == third


def test_a_refused_renewal_registers_anew(settings: EdgeSettings, fake: FakeRegister) -> None:
    async def refuse(csr: str) -> Any:
        raise Unauthorized("credential is not valid for this node")

    async def scenario() -> str:
        node = edge(settings, fake)
        node.client.renew = refuse  # type: ignore[method-assign]
        try:
            await node.register()
            await node.renew()
            # The heartbeat was refused for node-1 too, and asks late: already done.
            assert (await node.reregister("node-1")).node_id == "node-2"
            assert node.registration is not None
            return node.registration.node_id
        finally:
            await close(node)

    assert asyncio.run(scenario()) == "node-2"
    assert len(fake.sent) == 2 and fake.sent[0] != fake.sent[1]


def test_the_key_survives_only_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = registration_key.current(tmp_path)
    assert registration_key.current(tmp_path) == old

    def crash(*args: Any) -> None:
        raise OSError("crashed mid-write")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        registration_key.rotate(tmp_path)
    # Either the old key or the new one, never a torn file; no temp files left behind.
    assert registration_key.current(tmp_path) == old
    assert [p.name for p in tmp_path.iterdir()] == [registration_key.KEY_FILE]


def test_a_key_reused_with_other_details_is_rotated_not_retried_forever(
    settings: EdgeSettings, fake: FakeRegister
) -> None:
    """The control plane answers 409 idempotency_key_reused when the stored key was
    used with other details (the edge's settings changed): the edge's client keeps that
    reason, and the edge registers with a new key instead of retrying the old one."""

    async def reused(request: web.Request) -> web.Response:
        error = {
            "code": "conflict",
            "message": "reused",
            "details": {"reason": IDEMPOTENCY_KEY_REUSED},
        }
        return web.json_response({"error": error}, status=409)

    async def scenario() -> str:
        app = web.Application()
        app.router.add_post("/nodes/register", reused)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        node = edge(settings, fake)
        real = ControlPlaneClient(f"http://127.0.0.1:{port}")
        try:
            first_key = registration_key.current(settings.state_dir)
            calls: list[str] = []

            async def register(body: dict[str, Any]) -> Registration:
                calls.append(body["idempotency_key"])
                if body["idempotency_key"] == first_key:
                    return await real.register(body)  # the real client parses the 409
                return await fake(body)

            node.client.register = register  # type: ignore[method-assign]
            registration = await node.identity.register_until_answered(asyncio.Event())
            assert registration is not None
            assert calls[0] == first_key and calls[1] != first_key and len(calls) == 2
            return registration.node_id
        finally:
            await real.close()
            await close(node)
            await runner.cleanup()

    assert asyncio.run(scenario()) == "node-1"
    assert fake.stored_when_sent == fake.sent  # the new key was stored before it went out
