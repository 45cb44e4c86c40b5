"""The CDK entry point, settings from context, and the synthesis itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
    app = cdk.App(context={"chunk_size": "16777216", "edge_count": "3", "domain_name": ""})
    settings = FsnodeSettings.from_context(app.node)
    assert settings.chunk_size == 16 * 1024 * 1024 and settings.edge_count == 3
    assert settings.domain_name is None


@pytest.mark.parametrize(
    "bad",
    [
        {"chunk_size": 1024},
        {"heartbeat_timeout": 5},
        {"edge_count": 0},
        {"edge_ephemeral_gib": 500},
    ],
)
def test_bad_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        FsnodeSettings(**bad)


def test_cdk_json_context_matches_settings_defaults() -> None:
    context = json.loads((paths.REPO_ROOT / "cdk.json").read_text())["context"]
    defaults = FsnodeSettings()
    for name in FsnodeSettings.__dataclass_fields__:
        assert name in context, name
        expected = getattr(defaults, name)
        assert context[name] == ("" if expected is None else expected), name


@pytest.mark.skipif(
    not real_functions_ready(),
    reason="functions/app.py or functions/statemachines/*.asl.json not written yet",
)
def test_python_app_py_synthesizes_offline(tmp_path) -> None:
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
