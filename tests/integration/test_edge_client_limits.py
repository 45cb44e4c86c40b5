"""Every client is bounded, as nginx bounds them (issue 17.5, 17.8): real TLS and TCP
sockets against the real edge app on its real listeners (``BoundedSite``).

Short limits (about a second) keep the tests quick; the tests wait on conditions
(the server closing, a counter moving), never on how long something took.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from edge_node.cache import CacheConfig
from edge_node.limits import ClientLimits
from edge_node.manifest import Manifest
from tests.helpers import wait_for as wait_until
from tests.integration.edge_fixtures import EdgeServer, ThrowawayCA, edge_on_moto
from tests.integration.edge_publishing import put_file, share_query

BUCKET = "fsnode-edge-limits"
CHUNK = 256 * 1024
DATA = os.urandom(16 * CHUNK)  # 4 MiB: far more than a stalled socket takes
LIMITS = ClientLimits(
    header_timeout=1.0, keepalive_timeout=1.5, send_timeout=1.0, max_connections=8
)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeServer]:
    with edge_on_moto(
        tmp_path_factory,
        BUCKET,
        cache_config=CacheConfig(max_bytes=64 * 1024 * 1024),
        client_limits=LIMITS,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def shared(edge: EdgeServer) -> tuple[Manifest, str]:
    """A file already read once (cached), and its share query."""
    manifest = put_file(BUCKET, DATA, CHUNK)
    target = f"/f/{manifest.file_id}?{urlencode(share_query(manifest.file_id, None))}"
    assert fetch(edge, target) == DATA
    return manifest, target


def fetch(edge: EdgeServer, target: str, *, plain: bool = False) -> bytes:
    base = edge.plain_url if plain else edge.url
    with requests.Session() as session:
        session.trust_env = False
        answer = session.get(base + target, verify=str(edge.ca_file), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.content


def tls_socket(edge: EdgeServer, *, rcvbuf: int | None = None) -> ssl.SSLSocket:
    raw = socket.socket()
    if rcvbuf is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(30)  # a guard against hanging, never a measure
    raw.connect(("127.0.0.1", edge.port))
    return edge.client_ssl().wrap_socket(raw, server_hostname="127.0.0.1")


def closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes (EOF or reset): True; a guard timeout: False."""
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def request_head(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """One whole answer on a keep-alive connection: (head, body)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        assert data, "the server closed before answering"
        buffer += data
    head, _, body = buffer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        data = sock.recv(65536)
        assert data, "the server closed mid-answer"
        body += data
    return head, body


def test_a_tls_connection_that_sends_no_request_is_closed(edge: EdgeServer) -> None:
    before = edge.connections.closed["header_timeout"] if edge.connections else 0
    with tls_socket(edge) as sock:
        assert closed_by_server(sock)
    assert edge.connections is not None
    assert edge.connections.closed["header_timeout"] > before


def test_a_tcp_connection_that_never_starts_tls_is_closed(edge: EdgeServer) -> None:
    with socket.create_connection(("127.0.0.1", edge.port), timeout=30) as sock:
        assert closed_by_server(sock)  # the handshake timeout is the header timeout


def test_slowloris_is_closed_while_others_are_served(
    edge: EdgeServer, shared: tuple[Manifest, str]
) -> None:
    """Header bytes trickling in forever do not keep a connection open, and meanwhile
    every other client is served."""
    _, target = shared
    stop = threading.Event()
    closed: list[bool] = []

    def trickle(sock: ssl.SSLSocket) -> None:
        head = request_head(target)[:-2]  # never the blank line that ends the head
        try:
            sock.sendall(head)
            while not stop.is_set():
                sock.sendall(b"X-a: b\r\n")
                stop.wait(0.2)
        except (OSError, ssl.SSLError):
            closed.append(True)

    sockets = [tls_socket(edge) for _ in range(4)]
    threads = [threading.Thread(target=trickle, args=(sock,)) for sock in sockets]
    for thread in threads:
        thread.start()
    try:
        assert fetch(edge, target) == DATA  # served while the slow ones trickle
        wait_until(lambda: len(closed) == len(sockets), "every slowloris connection closed")
        assert fetch(edge, target, plain=True) == DATA
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for sock in sockets:
            sock.close()


def test_an_idle_keep_alive_connection_is_closed(
    edge: EdgeServer, shared: tuple[Manifest, str]
) -> None:
    _, target = shared
    assert edge.connections is not None
    before = edge.connections.closed["keepalive_timeout"]
    with tls_socket(edge) as sock:
        sock.sendall(request_head(target))
        head, body = read_answer(sock)
        assert head.startswith(b"HTTP/1.1 200") and body == DATA
        assert closed_by_server(sock)
    assert edge.connections.closed["keepalive_timeout"] > before


def test_past_the_cap_new_connections_are_closed_and_open_ones_keep_working(
    edge: EdgeServer, tmp_path: Path
) -> None:
    # An edge of its own with the default timeouts: held connections stay open however
    # slow this machine is. (``edge`` keeps the moto server up.)
    capped = EdgeServer(
        tmp_path,
        ThrowawayCA(),
        BUCKET,
        client_limits=ClientLimits(max_connections=LIMITS.max_connections),
    )
    capped.start()
    try:
        manifest = put_file(BUCKET, DATA, CHUNK)
        target = f"/f/{manifest.file_id}?{urlencode(share_query(manifest.file_id, None))}"
        guard = capped.connections
        assert guard is not None
        held = [tls_socket(capped) for _ in range(LIMITS.max_connections)]
        try:
            wait_until(lambda: guard.open_connections == LIMITS.max_connections, "every one open")
            # Refused as soon as it is accepted, before its TLS handshake.
            with pytest.raises((ConnectionError, ssl.SSLError)):
                tls_socket(capped).recv(1)
            assert guard.closed["max_connections"] == 1
            for sock in held:  # each one still gets its answer
                sock.sendall(request_head(target))
                assert read_answer(sock)[1] == DATA
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: guard.open_connections == 0, "the held connections to close")
        assert fetch(capped, target) == DATA  # below the cap again, new ones are served
    finally:
        capped.stop()


@pytest.mark.parametrize("plain", [False, True], ids=["tls", "plain-sendfile"])
def test_a_reader_that_stops_reading_is_dropped_and_counted_499(
    edge: EdgeServer, shared: tuple[Manifest, str], plain: bool
) -> None:
    """A client that never reads its answer is dropped after the send timeout (the
    sendfile path too); the answer counts as 499, and everyone else is served."""
    _, target = shared
    guard = edge.connections
    assert guard is not None
    dropped = guard.closed["send_timeout"]
    aborted = edge.metrics.responses[499]
    errors = edge.metrics.responses[500]
    if plain:
        sock: socket.socket = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", edge.http_port))
    else:
        sock = tls_socket(edge, rcvbuf=4096)
    with sock:
        sock.sendall(request_head(target))
        wait_until(lambda: guard.closed["send_timeout"] > dropped, "the stalled reader dropped")
        assert closed_by_server(sock)
    wait_until(lambda: edge.metrics.responses[499] > aborted, "the answer counted 499")
    assert edge.metrics.responses[500] == errors
    assert fetch(edge, target, plain=plain) == DATA
    # The handler ended (its leases released in its finally blocks).
    wait_until(lambda: edge.metrics.requests_in_flight == 0, "the dropped handler to end")


def test_a_client_that_aborts_mid_answer_is_499_not_500(
    edge: EdgeServer, shared: tuple[Manifest, str]
) -> None:
    _, target = shared
    aborted = edge.metrics.responses[499]
    errors = edge.metrics.responses[500]
    # A small receive buffer: the answer cannot all be in the kernel when the client
    # leaves, so the edge is still sending it.
    with tls_socket(edge, rcvbuf=4096) as sock:
        sock.sendall(request_head(target))
        assert sock.recv(65536)  # the answer has begun
        # A reset, as a browser closing the tab: no clean TLS shutdown.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
    wait_until(lambda: edge.metrics.responses[499] > aborted, "the abort counted 499")
    assert edge.metrics.responses[500] == errors
    metrics_text = requests.get(edge.url + "/metrics", verify=str(edge.ca_file), timeout=30).text
    assert 'fsnode_edge_responses_total{status="499"}' in metrics_text
    assert "# TYPE fsnode_edge_connections_closed_total counter" in metrics_text
    assert "fsnode_edge_connections_open " in metrics_text


def test_limits_come_from_the_settings() -> None:
    from edge_node.settings import EdgeSettings

    base = {"FSNODE_API_URL": "http://x", "FSNODE_JOIN_TOKEN": "t", "FSNODE_STATE_DIR": "/tmp/x"}
    assert EdgeSettings.from_env(base).client_limits == ClientLimits()
    custom = EdgeSettings.from_env(
        {
            **base,
            "FSNODE_EDGE_HEADER_TIMEOUT": "15",
            "FSNODE_EDGE_KEEPALIVE_TIMEOUT": "30",
            "FSNODE_EDGE_SEND_TIMEOUT": "45",
            "FSNODE_EDGE_MAX_CONNECTIONS": "100",
        }
    ).client_limits
    assert custom == ClientLimits(15.0, 30.0, 45.0, 100)
    for name, value in (("FSNODE_EDGE_SEND_TIMEOUT", "0"), ("FSNODE_EDGE_MAX_CONNECTIONS", "x")):
        with pytest.raises(ValueError, match=name):
            EdgeSettings.from_env({**base, name: value})
