"""The data plane's edge settings: the revalidation bound and the prefetch caps, read once
from the environment; bad values are refused naming the variable."""

from __future__ import annotations

import pytest

from edge_node.prefetch import PrefetchConfig
from edge_node.settings import EdgeSettings

BASE = {
    "FSNODE_API_URL": "http://127.0.0.1:1",
    "FSNODE_JOIN_TOKEN": "t",
    "FSNODE_STATE_DIR": "/tmp/edge-settings-test",
}


def test_defaults() -> None:
    settings = EdgeSettings.from_env(BASE)
    assert settings.manifest_max_age == 30.0
    assert settings.prefetch_config() == PrefetchConfig(
        segments=3, max_bytes=32 * 1024 * 1024, concurrency=4
    )


def test_values_are_read() -> None:
    settings = EdgeSettings.from_env(
        {
            **BASE,
            "FSNODE_MANIFEST_MAX_AGE": "2.5",
            "FSNODE_PREFETCH_SEGMENTS": "0",
            "FSNODE_PREFETCH_BYTES": "1000",
            "FSNODE_PREFETCH_CONCURRENCY": "1",
        }
    )
    assert settings.manifest_max_age == 2.5
    assert settings.prefetch_config() == PrefetchConfig(segments=0, max_bytes=1000, concurrency=1)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FSNODE_MANIFEST_MAX_AGE", "0"),
        ("FSNODE_MANIFEST_MAX_AGE", "-1"),
        ("FSNODE_MANIFEST_MAX_AGE", "soon"),
        ("FSNODE_PREFETCH_SEGMENTS", "-1"),
        ("FSNODE_PREFETCH_SEGMENTS", "three"),
        ("FSNODE_PREFETCH_BYTES", "0"),
        ("FSNODE_PREFETCH_CONCURRENCY", "0"),
    ],
)
def test_bad_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        EdgeSettings.from_env({**BASE, name: value})
