"""One synthesis of the whole app per session; every infra test reads its output.

Synthesis (Chalice packaging, the layer, cdk-nag) takes seconds, so it runs once.
While ``functions/app.py`` or its state machines are not written yet, a minimal
Chalice app with the agreed function names stands in, in a scratch directory.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra import paths
from infra.stack import SourcePaths

STACK_NAME = "FsnodeStack"

_PLACEHOLDER_APP = """\
from chalice import Chalice

app = Chalice(app_name="fsnode")


@app.route("/nodes")
def list_nodes():
    return {"nodes": []}


@app.lambda_function(name="plan_replication")
def plan_replication(event, context):
    return event


@app.lambda_function(name="warm_chunk")
def warm_chunk(event, context):
    return event


@app.schedule("rate(1 minute)", name="prune")
def prune(event):
    return None
"""

_PLACEHOLDER_ASL = {
    "Comment": "Stand-in for functions/statemachines/replicate.asl.json",
    "StartAt": "Plan",
    "States": {
        "Plan": {"Type": "Task", "Resource": "${PlanReplicationFunctionArn}", "Next": "Warm"},
        "Warm": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {
                "FunctionName": "${WarmChunkFunctionArn}",
                "Payload": {"token.$": "$$.Task.Token"},
            },
            "End": True,
        },
    },
}


@dataclass(frozen=True)
class Synthesis:
    """What the session's one synthesis produced."""

    outdir: Path
    template: dict[str, Any]
    seconds: float
    error: Exception | None
    uses_placeholder_functions: bool

    @property
    def assertions(self) -> Template:
        return Template.from_json(self.template)


def real_functions_ready() -> bool:
    return (paths.FUNCTIONS_DIR / "app.py").is_file() and any(
        paths.STATE_MACHINES_DIR.glob("*.asl.json")
    )


def load_cdk_app_module() -> ModuleType:
    # Not imported as ``app``: chalice imports the functions' app.py under that name.
    spec = importlib.util.spec_from_file_location("fsnode_cdk_app", paths.REPO_ROOT / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _placeholder_functions(root: Path) -> Path:
    functions = root / "functions"
    (functions / ".chalice").mkdir(parents=True)
    (functions / "statemachines").mkdir()
    (functions / "app.py").write_text(_PLACEHOLDER_APP, encoding="utf-8")
    (functions / "requirements.txt").write_text("", encoding="utf-8")
    shutil.copy(paths.FUNCTIONS_DIR / ".chalice" / "config.json", functions / ".chalice")
    (functions / "statemachines" / "replicate.asl.json").write_text(
        json.dumps(_PLACEHOLDER_ASL), encoding="utf-8"
    )
    return functions


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesis]:
    root = tmp_path_factory.mktemp("infra")
    placeholder = not real_functions_ready()
    sources = SourcePaths(
        functions_dir=_placeholder_functions(root) if placeholder else paths.FUNCTIONS_DIR
    )
    outdir = root / "cdk.out"
    module = load_cdk_app_module()
    started = time.perf_counter()
    error: Exception | None = None
    try:
        module.build_app(str(outdir), sources=sources).synth()
    except RuntimeError as exc:  # cdk-nag findings surface as a failed validation
        error = exc
    seconds = time.perf_counter() - started
    template_path = outdir / f"{STACK_NAME}.template.json"
    template = json.loads(template_path.read_text()) if template_path.exists() else {}
    print(f"\nfsnode infra: synthesis took {seconds:.1f} s (placeholder functions: {placeholder})")
    yield Synthesis(outdir, template, seconds, error, placeholder)


@pytest.fixture(scope="session")
def template(synthesis: Synthesis) -> Template:
    if not synthesis.template:
        pytest.fail(f"synthesis wrote no template: {synthesis.error}")
    return synthesis.assertions


@pytest.fixture(scope="session")
def resources(synthesis: Synthesis) -> dict[str, dict[str, Any]]:
    return dict(synthesis.template.get("Resources", {}))


def of_type(resources: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in resources.items() if value["Type"] == kind}
