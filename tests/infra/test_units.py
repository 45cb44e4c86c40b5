"""Small checks of the constructs' own logic, without the full synthesis."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra import paths
from infra.constructs.control_plane import _camel_to_snake
from infra.constructs.core_layer import LayerBuildError, _PipLocalBundling
from infra.constructs.workflows import Workflows, discover_definitions


def _asl(directory: Path, name: str, resource: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.asl.json").write_text(
        json.dumps(
            {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": resource, "End": True}}}
        )
    )


@pytest.mark.parametrize(
    ("camel", "snake"),
    [("PlanReplication", "plan_replication"), ("WarmChunk", "warm_chunk"), ("Gc", "gc")],
)
def test_placeholder_names_map_to_chalice_names(camel: str, snake: str) -> None:
    assert _camel_to_snake(camel) == snake


def test_workflows_bare_stack(tmp_path: Path) -> None:
    _asl(tmp_path, "gc", "${DeleteFileFunctionArn}")
    asked: list[str] = []

    def function_arn(name: str) -> str:
        asked.append(name)
        return f"arn:aws:lambda:us-east-1:111122223333:function:{name}"

    stack = cdk.Stack(cdk.App(), "Bare")
    workflows = Workflows(stack, "Workflows", definitions_dir=tmp_path, function_arn=function_arn)
    assert asked == ["DeleteFile"] and list(workflows.state_machines) == ["gc"]
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::StepFunctions::StateMachine", 1)
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineName": "Bare-gc",
            "DefinitionSubstitutions": {
                "DeleteFileFunctionArn": "arn:aws:lambda:us-east-1:111122223333:function:DeleteFile"
            },
        },
    )


def test_unknown_placeholder_is_named(tmp_path: Path) -> None:
    _asl(tmp_path, "gc", "${MysteryTopic}")
    with pytest.raises(KeyError, match="MysteryTopic"):
        Workflows(
            cdk.Stack(cdk.App(), "Bare"),
            "Workflows",
            definitions_dir=tmp_path,
            function_arn=str,
        )


def test_discovery_ignores_other_files(tmp_path: Path) -> None:
    _asl(tmp_path, "replicate", "x")
    (tmp_path / "notes.json").write_text("{}")
    assert list(discover_definitions(tmp_path)) == ["replicate"]


def test_layer_build_failure_is_explained(tmp_path: Path) -> None:
    # An unparsable requirement fails inside pip without touching the network.
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("this is not a requirement!!\n")
    bundling = _PipLocalBundling(
        library_dir=paths.CORE_LIBRARY_DIR,
        requirements=requirements,
        cache_dir=tmp_path / "cache",
        key="test",
    )
    with pytest.raises(LayerBuildError, match="network access"):
        bundling.try_bundle(str(tmp_path / "out"))
    assert not (tmp_path / "cache" / "layer-test").exists()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


@pytest.mark.skipif(
    not (paths.REPO_ROOT / "requirements.txt").is_file(), reason="no root requirements.txt"
)
def test_layer_pins_match_the_tested_versions() -> None:
    layer = _pins(paths.LAYER_REQUIREMENTS)
    tested = _pins(paths.REPO_ROOT / "requirements.txt")
    assert layer
    for name, version in layer.items():
        assert tested.get(name, version) == version, name
