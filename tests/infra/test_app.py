"""The CDK entry point, settings from context, and the synthesis itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from infra import paths
from infra.settings import FsnodeSettings

from .conftest import STACK_NAME, Synthesis, real_functions_ready


def test_synthesis_time_is_reported(synthesis: Synthesis) -> None:
    # Reported, not asserted: timing belongs in bench/, not in pass/fail.
    print(f"synthesis: {synthesis.seconds:.1f} s")
    assert synthesis.template["Transform"] == "AWS::Serverless-2016-10-31"


def test_settings_from_context_with_cli_strings() -> None:
    app = cdk.App(
        context={
            "chunk_size": "16777216",
            "edge_count": "3",
            "domain_name": "",
            "replication_sync_timeout": "12.5",
            "import_buckets": "media-a, media-b",
        }
    )
    settings = FsnodeSettings.from_context(app.node)
    assert settings.chunk_size == 16 * 1024 * 1024 and settings.edge_count == 3
    assert settings.domain_name is None
    assert settings.replication_sync_timeout == 12.5
    assert settings.import_buckets == ("media-a", "media-b")


def test_import_buckets_as_a_json_list() -> None:
    app = cdk.App(context={"import_buckets": ["media-a", "media-b"]})
    assert FsnodeSettings.from_context(app.node).import_buckets == ("media-a", "media-b")


@pytest.mark.parametrize(
    "bad",
    [
        {"chunk_size": 1024},
        {"heartbeat_timeout": 5},
        {"edge_count": 0},
        {"edge_count": 11, "edge_max_count": 10},
        {"replication_strategy": "eventual"},
        # API Gateway ends the request at 29 s, whatever the function does.
        {"replication_sync_timeout": 30.0},
        {"warm_timeout": 0},
        {"gc_max_wait": 10, "gc_retry_wait": 60},
        {"import_buckets": ("Not_A_Bucket",)},
        {"hosted_zone_id": "Z123"},
        {"public_url": "http://plain.example"},
        {"edge_cache_gib": 0},
        {"retire_grace_seconds": -1},
        {"hash_batch_bytes": 0},
        {"fallback_url_seconds": 0},
    ],
)
def test_bad_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FsnodeSettings(**bad)


def test_cdk_json_context_matches_settings_defaults() -> None:
    context = json.loads((paths.REPO_ROOT / "cdk.json").read_text())["context"]
    defaults = FsnodeSettings()
    for name in FsnodeSettings.__dataclass_fields__:
        assert name in context, name
        expected = getattr(defaults, name)
        if expected is None:
            expected = ""
        elif isinstance(expected, tuple):
            expected = list(expected)
        assert context[name] == expected, name


def test_cdk_json_context_reads_back_as_the_defaults() -> None:
    context = json.loads((paths.REPO_ROOT / "cdk.json").read_text())["context"]
    assert FsnodeSettings.from_context(cdk.App(context=context).node) == FsnodeSettings()


def test_every_control_plane_setting_comes_from_context() -> None:
    # Non-default values, so a setting that is dropped or crossed with another shows.
    settings = FsnodeSettings(
        chunk_size=8 * 1024 * 1024,
        replication_factor=3,
        replication_strategy="sync",
        replication_first_chunks=6,
        replication_max_moves=5,
        replication_sync_timeout=20.5,
        hot_replication_window=120,
        warm_timeout=400,
        evict_timeout=200,
        gc_retry_wait=30,
        gc_max_wait=1800,
        heartbeat_interval=10,
        heartbeat_timeout=45,
        cert_validity_days=7,
        retire_grace_seconds=90,
        hash_batch_bytes=1024,
        edge_max_load=8,
        fallback_url_seconds=600,
        public_url="https://cdn.example.com",
        node_namespace=(".edges.example.com", "203.0.113.0/24"),
    )
    assert settings.control_plane_environment() == {
        "FSNODE_CHUNK_SIZE": "8388608",
        "FSNODE_REPLICATION_FACTOR": "3",
        "FSNODE_REPLICATION_STRATEGY": "sync",
        "FSNODE_REPLICATION_FIRST_CHUNKS": "6",
        "FSNODE_REPLICATION_MAX_MOVES": "5",
        "FSNODE_REPLICATION_SYNC_TIMEOUT": "20.5",
        "FSNODE_HOT_REPLICATION_WINDOW": "120",
        "FSNODE_WARM_TIMEOUT": "400",
        "FSNODE_EVICT_TIMEOUT": "200",
        "FSNODE_GC_RETRY_WAIT": "30",
        "FSNODE_GC_MAX_WAIT": "1800",
        "FSNODE_HEARTBEAT_INTERVAL": "10",
        "FSNODE_HEARTBEAT_TIMEOUT": "45",
        "FSNODE_CERT_VALIDITY_DAYS": "7",
        "FSNODE_RETIRE_GRACE_SECONDS": "90",
        "FSNODE_HASH_BATCH_BYTES": "1024",
        "FSNODE_EDGE_MAX_LOAD": "8",
        "FSNODE_PLACEMENT_CACHE_SECONDS": "2",
        "FSNODE_FALLBACK_URL_SECONDS": "600",
        "FSNODE_NODE_NAMESPACE": ".edges.example.com,203.0.113.0/24",
        "FSNODE_PROBE_TIMEOUT": "3",
        "FSNODE_PUBLIC_URL": "https://cdn.example.com",
    }


@pytest.mark.skipif(
    not real_functions_ready(),
    reason="functions/app.py or functions/statemachines/*.asl.json not written yet",
)
def test_python_app_py_synthesizes_offline(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "CDK_"))  # no account, no credentials
    }
    env["CDK_OUTDIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=paths.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    template = json.loads((tmp_path / f"{STACK_NAME}.template.json").read_text())
    assert '"us-east-1"' in json.dumps(template) or "us-east-1" in json.dumps(template)
    assert not (paths.REPO_ROOT / "chalice.out").exists()
