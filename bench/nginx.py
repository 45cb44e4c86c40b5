"""The reference server: Debian's nginx with its own config in a temp dir.

One worker per edge worker it is measured against, ``sendfile on``, loopback only, TLS with
the certificate the edge uses. Started in the foreground of its own session and
stopped by its pid, never through the system service.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import Unavailable, pin_process

TLS = """\
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;"""

CONFIG = """\
worker_processes {workers};
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{http_port};
{tls}
        root {root};
        location / {{ }}
    }}
}}
"""


def nginx_binary() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise Unavailable("nginx is not installed (apt-get install nginx-light)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(slots=True)
class Nginx:
    """A running nginx; ``url(path, tls)`` addresses a file under its root."""

    process: subprocess.Popen[bytes]
    http_port: int
    https_port: int
    directory: Path

    def url(self, path: str, *, tls: bool) -> str:
        if tls:
            return f"https://127.0.0.1:{self.https_port}{path}"
        return f"http://127.0.0.1:{self.http_port}{path}"

    def pids(self) -> list[int]:
        """The master and its worker(s) (the workers may not be forked yet)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        found = [self.process.pid]
        if children.exists():
            found += [int(pid) for pid in children.read_text().split()]
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGQUIT: graceful stop of master and workers.
            os.killpg(self.process.pid, signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def start_nginx(
    root: Path,
    cert: Path | None,
    key: Path | None,
    directory: Path,
    cpu: int | None = None,
    workers: int = 1,
) -> Nginx:
    """Serve ``root`` over HTTP, and over HTTPS too when given a certificate and key."""
    binary = nginx_binary()
    directory.mkdir(parents=True, exist_ok=True)
    http_port, https_port = _free_port(), _free_port()
    conf = directory / "nginx.conf"
    tls = ""
    if cert is not None and key is not None:
        tls = TLS.format(https_port=https_port, cert=cert.resolve(), key=key.resolve())
    conf.write_text(
        CONFIG.format(
            dir=directory, http_port=http_port, tls=tls, root=root.resolve(), workers=workers
        )
    )
    # -p sets the prefix so nginx never touches /var/lib/nginx or /var/log/nginx;
    # -e (nginx >= 1.19.5) keeps even the start-up error log out of /var/log.
    argv = [binary, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)]
    log = (directory / "stderr.log").open("ab")
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Nginx(process, http_port, https_port, directory)
    try:
        _wait_listening(http_port, process, directory)
        if tls:
            _wait_listening(https_port, process, directory)
        if cpu is not None:
            pin_all(server, cpu)
    except BaseException:
        server.stop()
        raise
    return server


def pin_all(server: Nginx, cpu: int) -> None:
    """Pin the master and its one worker to ``cpu``, and check that both are.

    The master listens before it forks the worker, so the worker may not exist yet
    when the port answers; a worker forked after the master is pinned inherits the
    mask. Wait (bounded) until the worker is there and every pid has the mask.
    """
    for _ in range(100):  # 10 s at most
        pids = server.pids()
        for pid in pids:
            pin_process(pid, [cpu])
        workers = pids[1:]
        if len(workers) == 1 and all(_affinity(pid) == {cpu} for pid in pids):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nginx master and one worker not pinned to CPU {cpu}: {server.pids()}")


def _affinity(pid: int) -> set[int]:
    try:
        return set(os.sched_getaffinity(pid))
    except ProcessLookupError:
        return set()


def _wait_listening(port: int, process: subprocess.Popen[bytes], directory: Path) -> None:
    for _ in range(100):  # 10 s at most
        if process.poll() is not None:
            log = directory / "error.log"
            detail = log.read_text()[-500:] if log.exists() else ""
            raise RuntimeError(f"nginx exited ({process.returncode}): {detail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nginx did not listen on {port}")
