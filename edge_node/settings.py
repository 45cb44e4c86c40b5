"""Edge settings: read from the environment once, at start, into one frozen object."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edge_node.cache import CacheConfig
from edge_node.limits import ClientLimits
from edge_node.origin import OriginConfig
from edge_node.prefetch import PrefetchConfig

MIB = 1024 * 1024
DEFAULT_CACHE_MAX_BYTES = 10 * 1024**3
# Each worker's fill buffers share 64 MiB (16 concurrent 4 MiB chunk fills); hits
# come from the kernel's page cache, which all workers share (README: Memory).
DEFAULT_FILL_MEMORY_BYTES = 64 * MIB
DEFAULT_MANIFEST_MAX_AGE = 30.0
# The defaults of the client limits, written once (in ClientLimits).
_LIMITS = ClientLimits()


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the host's count)."""
    return len(os.sched_getaffinity(0)) or 1


_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Everything an edge needs to start; see docs/PROTOCOL.md (Settings)."""

    api_url: str
    join_token: str
    host: str
    port: int
    http_port: int | None
    state_dir: Path
    cache_max_bytes: int
    region: str
    capacity_bytes: int
    ca_bundle: str | None = None
    lat: float | None = None
    lng: float | None = None
    # Where clients reach this node; defaults to https://HOST:PORT. Behind a load
    # balancer the public name differs from the bind address.
    public_url: str | None = None
    shutdown_grace_seconds: float = 20.0
    log_level: str = "INFO"
    # With a port, /healthz and /metrics answer there (plain HTTP, on ``host``) and not
    # on the TLS port players use.
    admin_port: int | None = None
    # Kernel sendfile for plain-HTTP responses (FSNODE_EDGE_SENDFILE=0 turns it off,
    # for benchmarking the buffered path).
    sendfile: bool = True
    # Disk cache watermarks (shares of cache_max_bytes) and the share of the
    # filesystem always left free.
    cache_high_water: float = 0.90
    cache_low_water: float = 0.80
    cache_min_free_ratio: float = 0.05
    # Worker processes serving the port (default: one per core).
    workers: int = 1
    # Stored chunks the cache manager re-hashes per second (0: no scrub).
    cache_scrub_bytes_per_second: int = 8 * MIB
    # The memory one worker's fill buffers share.
    fill_memory_bytes: int = DEFAULT_FILL_MEMORY_BYTES
    # Concurrent ranged GETs: a chunk splits into parts of at least part_bytes, at
    # most parallel_parts of them; connections caps all origin GETs at once.
    origin_part_bytes: int = 2 * MIB
    origin_parallel_parts: int = 4
    # A fill a reader starts asks first for this much at the reader's offset (0: off).
    origin_first_part_bytes: int = 256 * 1024
    origin_connections: int = 32
    origin_attempts: int = 4
    origin_budget_seconds: float = 30.0
    origin_connect_timeout: float = 5.0
    origin_read_timeout: float = 10.0
    readahead_chunks: int = 2
    # Renew the certificate at 2/3 of its lifetime, or earlier when less than this remains.
    cert_renew_margin_seconds: float = 24 * 3600.0
    # Proxies in front that append the client to X-Forwarded-For (0: use the TCP peer).
    trusted_proxy_hops: int = 0
    # The revalidation bound: no response starts with a file's head (which version is
    # current) read longer ago than this; at most this long after a delete or an
    # overwrite, no response starts with the old content. Folder listings too.
    manifest_max_age: float = DEFAULT_MANIFEST_MAX_AGE
    # Playlist-aware prefetch: segments per playlist (0: off), their bytes, fills at once.
    prefetch_segments: int = 3
    prefetch_bytes: int = 32 * MIB
    prefetch_concurrency: int = 4
    # Header, keep-alive and send timeouts and the connection cap (edge_node.limits).
    client_limits: ClientLimits = _LIMITS

    def cache_config(self) -> CacheConfig:
        return CacheConfig(
            max_bytes=self.cache_max_bytes,
            high_water=self.cache_high_water,
            low_water=self.cache_low_water,
            min_free_ratio=self.cache_min_free_ratio,
            fill_memory_bytes=self.fill_memory_bytes,
            scrub_bytes_per_second=self.cache_scrub_bytes_per_second,
            part_bytes=self.origin_part_bytes,
            max_parts=self.origin_parallel_parts,
            first_part_bytes=self.origin_first_part_bytes,
        )

    def prefetch_config(self) -> PrefetchConfig:
        return PrefetchConfig(
            segments=self.prefetch_segments,
            max_bytes=self.prefetch_bytes,
            concurrency=self.prefetch_concurrency,
        )

    def origin_config(self) -> OriginConfig:
        return OriginConfig(
            connections=self.origin_connections,
            max_attempts=self.origin_attempts,
            budget_seconds=self.origin_budget_seconds,
            connect_timeout=self.origin_connect_timeout,
            read_timeout=self.origin_read_timeout,
        )

    @property
    def endpoint(self) -> str:
        """The public HTTPS base URL sent at registration (the CSR names its host)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"https://{_url_host(self.host)}:{self.port}"

    @property
    def endpoint_host(self) -> str:
        """The host name or IP that the certificate must name."""
        if not self.public_url:
            return self.host
        return urlsplit(self.public_url).hostname or self.host

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EdgeSettings:
        """Read the ``FSNODE_*`` variables; raise ValueError naming the first bad one."""
        source = os.environ if env is None else env
        cache_max = _int(source, "FSNODE_CACHE_MAX_BYTES", DEFAULT_CACHE_MAX_BYTES)
        http_port_raw = source.get("FSNODE_EDGE_HTTP_PORT", "").strip()
        admin_port_raw = source.get("FSNODE_EDGE_ADMIN_PORT", "").strip()
        settings = cls(
            api_url=_required(source, "FSNODE_API_URL").rstrip("/"),
            join_token=_required(source, "FSNODE_JOIN_TOKEN"),
            host=source.get("FSNODE_EDGE_HOST", "127.0.0.1").strip() or "127.0.0.1",
            port=_port(source, "FSNODE_EDGE_PORT", 8443),
            http_port=_port(source, "FSNODE_EDGE_HTTP_PORT", 0) if http_port_raw else None,
            admin_port=_port(source, "FSNODE_EDGE_ADMIN_PORT", 0) if admin_port_raw else None,
            state_dir=Path(_required(source, "FSNODE_STATE_DIR")).expanduser(),
            cache_max_bytes=cache_max,
            region=source.get("FSNODE_REGION") or source.get("AWS_DEFAULT_REGION") or "local",
            capacity_bytes=_int(source, "FSNODE_CAPACITY_BYTES", cache_max),
            ca_bundle=source.get("FSNODE_CA_BUNDLE") or None,
            lat=_float(source, "FSNODE_EDGE_LAT"),
            lng=_float(source, "FSNODE_EDGE_LNG"),
            public_url=source.get("FSNODE_EDGE_PUBLIC_URL") or None,
            shutdown_grace_seconds=float(source.get("FSNODE_SHUTDOWN_GRACE_SECONDS", "20")),
            log_level=source.get("FSNODE_LOG_LEVEL", "INFO").upper(),
            sendfile=source.get("FSNODE_EDGE_SENDFILE", "1").strip().lower() not in _FALSE,
            cache_high_water=_share(source, "FSNODE_CACHE_HIGH_WATER", 0.90),
            cache_low_water=_share(source, "FSNODE_CACHE_LOW_WATER", 0.80),
            cache_min_free_ratio=_share(source, "FSNODE_CACHE_MIN_FREE_RATIO", 0.05),
            workers=_int(source, "FSNODE_WORKERS", usable_cores()),
            cache_scrub_bytes_per_second=_int(
                source, "FSNODE_CACHE_SCRUB_BYTES_PER_SECOND", 8 * MIB, zero=True
            ),
            fill_memory_bytes=_int(source, "FSNODE_FILL_MEMORY_BYTES", DEFAULT_FILL_MEMORY_BYTES),
            origin_part_bytes=_int(source, "FSNODE_ORIGIN_PART_BYTES", 2 * MIB),
            origin_parallel_parts=_int(source, "FSNODE_ORIGIN_PARALLEL_PARTS", 4),
            origin_first_part_bytes=_int(
                source, "FSNODE_ORIGIN_FIRST_PART_BYTES", 256 * 1024, zero=True
            ),
            origin_connections=_int(source, "FSNODE_ORIGIN_CONNECTIONS", 32),
            origin_attempts=_int(source, "FSNODE_ORIGIN_ATTEMPTS", 4),
            origin_budget_seconds=_seconds(source, "FSNODE_ORIGIN_BUDGET_SECONDS", 30.0),
            origin_connect_timeout=_seconds(source, "FSNODE_ORIGIN_CONNECT_TIMEOUT", 5.0),
            origin_read_timeout=_seconds(source, "FSNODE_ORIGIN_READ_TIMEOUT", 10.0),
            readahead_chunks=_int(source, "FSNODE_READAHEAD_CHUNKS", 2, zero=True),
            cert_renew_margin_seconds=_seconds(
                source, "FSNODE_CERT_RENEW_MARGIN_SECONDS", 24 * 3600.0
            ),
            trusted_proxy_hops=_int(source, "FSNODE_TRUSTED_PROXY_HOPS", 0, zero=True),
            manifest_max_age=_seconds(source, "FSNODE_MANIFEST_MAX_AGE", DEFAULT_MANIFEST_MAX_AGE),
            prefetch_segments=_int(source, "FSNODE_PREFETCH_SEGMENTS", 3, zero=True),
            prefetch_bytes=_int(source, "FSNODE_PREFETCH_BYTES", 32 * MIB),
            prefetch_concurrency=_int(source, "FSNODE_PREFETCH_CONCURRENCY", 4),
            client_limits=ClientLimits(
                header_timeout=_seconds(
                    source, "FSNODE_EDGE_HEADER_TIMEOUT", _LIMITS.header_timeout
                ),
                keepalive_timeout=_seconds(
                    source, "FSNODE_EDGE_KEEPALIVE_TIMEOUT", _LIMITS.keepalive_timeout
                ),
                send_timeout=_seconds(source, "FSNODE_EDGE_SEND_TIMEOUT", _LIMITS.send_timeout),
                max_connections=_int(
                    source, "FSNODE_EDGE_MAX_CONNECTIONS", _LIMITS.max_connections
                ),
            ),
        )
        try:
            settings.cache_config()
        except ValueError as exc:
            raise ValueError(f"FSNODE_CACHE_*: {exc}") from exc
        return settings


def _url_host(host: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ValueError(f"{name} must be set")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, zero: bool = False) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be positive")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name)
    if value is None:
        return default
    if value <= 0:
        raise ValueError(f"{name} must be positive")
    return value


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name)
    if value is None:
        return default
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be between 0 and 1")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a port number, got {raw!r}") from exc
    if not 0 <= value <= 65535:
        raise ValueError(f"{name} must be a port number, got {raw!r}")
    return value


def _float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc
