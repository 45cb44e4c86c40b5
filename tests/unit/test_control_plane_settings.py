"""The control plane's settings: one schema that CDK writes and the functions read back."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from fsnode_core.control_plane_settings import ControlPlaneOptions, env_name
from fsnode_core.settings_env import SettingError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))
from chalicelib.settings import Settings

RESOURCES = {
    "FSNODE_NODES_TABLE": "nodes",
    "FSNODE_CHUNKS_TABLE": "chunks",
    "FSNODE_BUCKET": "origin",
}


def test_unset_variables_take_the_schemas_defaults() -> None:
    settings = Settings.from_env(RESOURCES)
    defaults = ControlPlaneOptions()
    for field in dataclasses.fields(ControlPlaneOptions):
        if field.name != "import_buckets":
            assert getattr(settings, field.name) == getattr(defaults, field.name), field.name
    assert settings.heartbeat_timeout == 60 and settings.heartbeat_interval == 15
    assert settings.import_buckets == ("origin",)  # the origin, when none are listed
    assert settings.public_url is None and settings.replicate_state_machine_arn is None


def test_what_cdk_writes_the_functions_read_back() -> None:
    chosen = ControlPlaneOptions(
        chunk_size=8 * 1024 * 1024,
        replication_strategy="sync",
        replication_sync_timeout=12.5,
        heartbeat_interval=20,
        heartbeat_timeout=90,
        retire_grace_seconds=0,
        public_url="https://cdn.example.com",
        import_buckets=("media-a", "media-b"),
    )
    env = {
        **RESOURCES,
        **chosen.to_env(),
        env_name("import_buckets"): ",".join(chosen.import_buckets),
    }
    read = Settings.from_env(env)
    for field in dataclasses.fields(ControlPlaneOptions):
        assert getattr(read, field.name) == getattr(chosen, field.name), field.name
    assert ControlPlaneOptions().to_env()["FSNODE_PUBLIC_URL"] == ""  # unset is empty


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("FSNODE_CHUNK_SIZE", "4MiB", "must be an integer"),
        ("FSNODE_REPLICATION_SYNC_TIMEOUT", "soon", "must be a number"),
        ("FSNODE_REPLICATION_STRATEGY", "eventual", "must be sync or async"),
        ("FSNODE_REPLICATION_FACTOR", "0", "must be at least 1"),
        ("FSNODE_WARM_TIMEOUT", "0", "must be positive"),
        ("FSNODE_EDGE_MAX_LOAD", "-1", "must not be negative"),
        ("FSNODE_HEARTBEAT_TIMEOUT", "15", "must exceed heartbeat_interval"),
        ("FSNODE_GC_MAX_WAIT", "10", "must be at least gc_retry_wait"),
        ("FSNODE_IMPORT_BUCKETS", "Not_A_Bucket", "is not an S3 bucket name"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(name: str, value: str, problem: str) -> None:
    with pytest.raises(SettingError, match=problem) as refused:
        Settings.from_env({**RESOURCES, name: value})
    assert refused.value.name.upper() in (name, name.removeprefix("FSNODE_"))


@pytest.mark.parametrize("missing", sorted(RESOURCES))
def test_a_missing_resource_name_is_refused(missing: str) -> None:
    env = {k: v for k, v in RESOURCES.items() if k != missing}
    with pytest.raises(SettingError, match="must be set") as refused:
        Settings.from_env(env)
    assert refused.value.name == missing
