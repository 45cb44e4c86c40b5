"""Key, CSR and server context (edge_node.tls), and settings (edge_node.settings)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from edge_node import tls
from edge_node.settings import EdgeSettings


def san_of(csr_pem: str) -> list[object]:
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    return list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def test_key_is_private_and_reused(tmp_path: Path) -> None:
    key = tls.load_or_create_key(tmp_path)
    path = tmp_path / tls.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.key_size >= 2048
    again = tls.load_or_create_key(tmp_path)
    assert again.private_numbers() == key.private_numbers()
    assert [p.name for p in tmp_path.iterdir()] == [tls.KEY_FILE]  # no temp files left


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
        ("::1", x509.IPAddress(ipaddress.ip_address("::1"))),
        ("Edge-1.Example.com", x509.DNSName("edge-1.example.com")),
    ],
)
def test_csr_names_exactly_the_endpoint_host(
    tmp_path: Path, host: str, expected: x509.GeneralName
) -> None:
    key = tls.load_or_create_key(tmp_path)
    assert san_of(tls.build_csr(key, host)) == [expected]


def test_server_context_requires_tls_1_2(tmp_path: Path) -> None:
    key = tls.load_or_create_key(tmp_path)
    csr = x509.load_pem_x509_csr(tls.build_csr(key, "127.0.0.1").encode())
    now = dt.datetime.now(dt.UTC)
    cert = (  # self-signed from the CSR: enough to load a context
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(csr.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path = tls.save_certificate(tmp_path, pem, "", None)
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o600
    context = tls.server_context(cert_path, tmp_path / tls.KEY_FILE)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_settings_from_env(tmp_path: Path) -> None:
    settings = EdgeSettings.from_env(
        {
            "FSNODE_API_URL": "http://127.0.0.1:9000/",
            "FSNODE_JOIN_TOKEN": "t",
            "FSNODE_EDGE_HOST": "::1",
            "FSNODE_EDGE_PORT": "8443",
            "FSNODE_STATE_DIR": str(tmp_path),
            "FSNODE_CACHE_MAX_BYTES": "1000",
        }
    )
    assert settings.api_url == "http://127.0.0.1:9000"
    assert settings.endpoint == "https://[::1]:8443"
    assert settings.endpoint_host == "::1"
    assert settings.http_port is None
    assert settings.capacity_bytes == 1000


@pytest.mark.parametrize(
    ("name", "value"),
    [("FSNODE_EDGE_PORT", "http"), ("FSNODE_CACHE_MAX_BYTES", "-1"), ("FSNODE_API_URL", "")],
)
def test_bad_settings_name_the_variable(tmp_path: Path, name: str, value: str) -> None:
    env = {
        "FSNODE_API_URL": "http://x",
        "FSNODE_JOIN_TOKEN": "t",
        "FSNODE_STATE_DIR": str(tmp_path),
        name: value,
    }
    with pytest.raises(ValueError, match=name):
        EdgeSettings.from_env(env)


def test_renewal_is_due_at_two_thirds_of_the_lifetime_or_inside_the_margin() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=30)
    assert tls.renewal_time(start, end, margin=3600) == start + dt.timedelta(days=20)
    # Less than the margin would remain at the 2/3 point: renew earlier.
    assert tls.renewal_time(start, end, margin=12 * 86400) == start + dt.timedelta(days=18)
    # A margin longer than the lifetime: renew at half of it, not in a loop.
    assert tls.renewal_time(start, end, margin=40 * 86400) == start + dt.timedelta(days=15)


def test_new_settings_have_defaults_and_checks(tmp_path: Path) -> None:
    base = {
        "FSNODE_API_URL": "http://x",
        "FSNODE_JOIN_TOKEN": "t",
        "FSNODE_STATE_DIR": str(tmp_path),
    }
    settings = EdgeSettings.from_env(
        {
            **base,
            "FSNODE_CACHE_HIGH_WATER": "0.7",
            "FSNODE_CACHE_LOW_WATER": "0.5",
            "FSNODE_ORIGIN_PART_BYTES": "1048576",
            "FSNODE_ORIGIN_READ_TIMEOUT": "2.5",
        }
    )
    cache = settings.cache_config()
    assert (cache.high_water, cache.low_water) == (0.7, 0.5)
    assert cache.part_bytes == 1048576 and cache.min_free_ratio == 0.05
    assert cache.first_part_bytes == 256 * 1024
    for raw, first in (("0", 0), ("131072", 131072)):
        env = {**base, "FSNODE_ORIGIN_FIRST_PART_BYTES": raw}
        assert EdgeSettings.from_env(env).cache_config().first_part_bytes == first
    with pytest.raises(ValueError, match="FSNODE_ORIGIN_FIRST_PART_BYTES"):
        EdgeSettings.from_env({**base, "FSNODE_ORIGIN_FIRST_PART_BYTES": "-1"})
    assert settings.origin_config().read_timeout == 2.5
    with pytest.raises(ValueError, match="FSNODE_CACHE"):
        EdgeSettings.from_env(
            {**base, "FSNODE_CACHE_HIGH_WATER": "0.5", "FSNODE_CACHE_LOW_WATER": "0.8"}
        )
    with pytest.raises(ValueError, match="FSNODE_CACHE_MIN_FREE_RATIO"):
        EdgeSettings.from_env({**base, "FSNODE_CACHE_MIN_FREE_RATIO": "2"})


def test_memory_and_workers_defaults_suit_a_small_node(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    settings = EdgeSettings.from_env(env)
    assert settings.cache_config().fill_memory_bytes == 64 * 1024 * 1024
    assert settings.workers == len(os.sched_getaffinity(0))
    raised = EdgeSettings.from_env(
        {**env, "FSNODE_FILL_MEMORY_BYTES": "2097152", "FSNODE_WORKERS": "3"}
    )
    assert (raised.cache_config().fill_memory_bytes, raised.workers) == (2097152, 3)
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match="FSNODE_WORKERS"):
            EdgeSettings.from_env({**env, "FSNODE_WORKERS": bad})


def test_trusted_proxy_hops_default_to_the_tcp_peer(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    assert EdgeSettings.from_env(env).trusted_proxy_hops == 0
    assert EdgeSettings.from_env({**env, "FSNODE_TRUSTED_PROXY_HOPS": "1"}).trusted_proxy_hops == 1
    with pytest.raises(ValueError, match="FSNODE_TRUSTED_PROXY_HOPS"):
        EdgeSettings.from_env({**env, "FSNODE_TRUSTED_PROXY_HOPS": "-1"})


def base_env(tmp_path: Path) -> dict[str, str]:
    return {
        "FSNODE_API_URL": "http://x",
        "FSNODE_JOIN_TOKEN": "t",
        "FSNODE_STATE_DIR": str(tmp_path),
    }
