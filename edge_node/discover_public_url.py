"""Container entrypoint: learn this host's public address, then run the edge.

In AWS every edge is an EC2 instance with its own public address, so that a share
redirect reaches the edge placement chose. With
``FSNODE_EDGE_PUBLIC_URL_SOURCE=ec2-metadata`` this reads the instance's public
DNS name (else its public IPv4 address) from the instance metadata service
(IMDSv2: a session token first, then reads that carry it), sets
``FSNODE_EDGE_PUBLIC_URL=https://HOST:FSNODE_EDGE_PUBLIC_PORT`` and replaces
itself with ``python -m edge_node``. The CSR then names exactly that host.

An explicit ``FSNODE_EDGE_PUBLIC_URL`` wins, and with no source set nothing is
looked up: the same image runs anywhere else unchanged. Exit 2 when the address
cannot be learned (like a bad setting of the edge itself).
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, MutableMapping, Sequence

SOURCE_VARIABLE = "FSNODE_EDGE_PUBLIC_URL_SOURCE"
EC2_METADATA = "ec2-metadata"
# botocore's name for the metadata endpoint, so tests and odd networks can point it.
ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_TTL_SECONDS = 60
# Preferred first: a DNS name keeps working in TLS clients that skip SNI for IPs.
ADDRESS_PATHS = ("/latest/meta-data/public-hostname", "/latest/meta-data/public-ipv4")

Execute = Callable[[str, Sequence[str], Mapping[str, str]], object]


class DiscoveryError(RuntimeError):
    """The instance has no public address, or the metadata service cannot be reached."""


def public_host(endpoint: str, *, attempts: int = 5, timeout: float = 2.0) -> str:
    """The instance's public DNS name or IPv4 address, retrying transient failures.

    Right after boot the metadata service may refuse a connection for a moment;
    a missing address (404 on both paths) is final and is not retried.
    """
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return _read_public_host(endpoint.rstrip("/"), timeout)
        except (urllib.error.URLError, OSError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code not in (500, 503):
                raise DiscoveryError(f"instance metadata answered {exc.code}") from exc
            if attempt == attempts:
                raise DiscoveryError(f"instance metadata unreachable: {exc}") from exc
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # the loop returns or raises


def _read_public_host(endpoint: str, timeout: float) -> str:
    token_request = urllib.request.Request(
        f"{endpoint}/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)},
    )
    with urllib.request.urlopen(token_request, timeout=timeout) as answer:
        token: str = answer.read().decode("ascii").strip()
    for path in ADDRESS_PATHS:
        request = urllib.request.Request(
            f"{endpoint}{path}", headers={"X-aws-ec2-metadata-token": token}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                value: str = answer.read().decode("ascii").strip()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # no such address on this instance: try the next kind
                continue
            raise
        if value:
            return value
    raise DiscoveryError(
        "the instance has no public DNS name or IPv4 address (launch it in a public "
        "subnet with a public IP, and enable DNS hostnames on the VPC)"
    )


def public_url(host: str, port: int) -> str:
    """``https://HOST:PORT``: the control plane accepts an endpoint only with its port."""
    return f"https://{host}:{port}"


def prepare_environment(env: MutableMapping[str, str]) -> None:
    """Set ``FSNODE_EDGE_PUBLIC_URL`` in ``env`` when asked to discover it."""
    source = env.get(SOURCE_VARIABLE, "").strip()
    if not source or env.get("FSNODE_EDGE_PUBLIC_URL", "").strip():
        return
    if source != EC2_METADATA:
        raise DiscoveryError(f"{SOURCE_VARIABLE} must be {EC2_METADATA!r} or unset, not {source!r}")
    raw_port = env.get("FSNODE_EDGE_PUBLIC_PORT", "").strip() or "443"
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise DiscoveryError(f"FSNODE_EDGE_PUBLIC_PORT must be a port number, not {raw_port!r}")
    host = public_host(env.get(ENDPOINT_VARIABLE) or DEFAULT_ENDPOINT)
    env["FSNODE_EDGE_PUBLIC_URL"] = public_url(host, int(raw_port))


def _exec(path: str, args: Sequence[str], env: Mapping[str, str]) -> object:
    os.execvpe(path, list(args), dict(env))  # never returns


def main(
    argv: Sequence[str] | None = None,
    env: MutableMapping[str, str] | None = None,
    execute: Execute = _exec,
) -> int:
    """Discover the address if asked, then become ``python -m edge_node``."""
    environment = dict(os.environ) if env is None else env
    try:
        prepare_environment(environment)
    except DiscoveryError as exc:
        print(f"edge: cannot learn the public address: {exc}", file=sys.stderr)
        return 2
    url = environment.get("FSNODE_EDGE_PUBLIC_URL")
    if url:
        print(f"edge public url {url}", file=sys.stderr, flush=True)
    args = list(sys.argv[1:] if argv is None else argv)
    execute(sys.executable, [sys.executable, "-m", "edge_node", *args], environment)
    return 0  # only reached when ``execute`` returns (tests)


if __name__ == "__main__":
    sys.exit(main())
