"""Synthesis refuses a control plane package without the player's hls.js or dash.js."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_

from infra.constructs.control_plane import PLAYER_LIBRARIES, ControlPlane

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("present", [(), PLAYER_LIBRARIES[:1], PLAYER_LIBRARIES[1:]])
def test_the_package_must_hold_both_player_libraries(
    tmp_path: Path, present: tuple[str, ...]
) -> None:
    (tmp_path / "app.py").write_text("from chalice import Chalice\napp = Chalice('fsnode')\n")
    for library in present:
        (tmp_path / library).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / library).write_text("/* built */")
    stack = Stack(App(), "Probe")
    layer = lambda_.LayerVersion.from_layer_version_arn(
        stack, "Layer", "arn:aws:lambda:us-east-1:111111111111:layer:core:1"
    )
    with pytest.raises(FileNotFoundError, match="make web-assets"):
        ControlPlane(
            stack,
            "ControlPlane",
            source_dir=tmp_path,
            layer=layer,
            environment={},
            work_dir=tmp_path / "work",
            api_name="probe",
        )
    # The real package has both (make web-assets ran before the tests).
    assert all((ROOT / "functions" / library).is_file() for library in PLAYER_LIBRARIES)
