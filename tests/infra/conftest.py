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

# The synthesized template's Resources section: logical id -> CloudFormation resource JSON.
Resources = dict[str, dict[str, Any]]

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
    shutil.copy(paths.FUNCTIONS_DIR / "gateway_responses.json", functions)
    (functions / "statemachines" / "replicate.asl.json").write_text(
        json.dumps(_PLACEHOLDER_ASL), encoding="utf-8"
    )
    # The stand-in app serves no page, but synthesis refuses a control plane without the
    # player library (infra/constructs/control_plane.py): give it a stand-in file too.
    vendor = functions / "chalicelib" / "web" / "vendor"
    vendor.mkdir(parents=True)
    for library in ("hls.min.js", "dash.mediaplayer.min.js"):
        (vendor / library).write_text("/* stand-in: the placeholder app serves no page */\n")
    return functions


def synthesize(
    root: Path, *, placeholder: bool, context: dict[str, Any] | None = None
) -> Synthesis:
    """Run app.py's ``build_app`` (cdk-nag included) into ``root/cdk.out``."""
    sources = SourcePaths(
        functions_dir=_placeholder_functions(root) if placeholder else paths.FUNCTIONS_DIR
    )
    outdir = root / "cdk.out"
    module = load_cdk_app_module()
    started = time.perf_counter()
    error: Exception | None = None
    try:
        module.build_app(str(outdir), sources=sources, context=context).synth()
    except RuntimeError as exc:  # cdk-nag findings surface as a failed validation
        error = exc
    seconds = time.perf_counter() - started
    template_path = outdir / f"{STACK_NAME}.template.json"
    template = json.loads(template_path.read_text()) if template_path.exists() else {}
    return Synthesis(outdir, template, seconds, error, placeholder)


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesis]:
    placeholder = not real_functions_ready()
    result = synthesize(tmp_path_factory.mktemp("infra"), placeholder=placeholder)
    print(
        f"\nfsnode infra: synthesis took {result.seconds:.1f} s "
        f"(placeholder functions: {placeholder})"
    )
    yield result


# Every optional feature on, every setting off its default. The small stand-in app
# keeps this second synthesis cheap (the layer and jsii are warm by then); what it
# checks (context → settings → stack) does not depend on the functions' code.
CUSTOM_CONTEXT: dict[str, Any] = {
    "chunk_size": "8388608",
    "replication_factor": "3",
    "replication_strategy": "sync",
    "replication_first_chunks": "6",
    "replication_max_moves": "5",
    "replication_sync_timeout": "20.5",
    "hot_replication_window": "120",
    "warm_timeout": "400",
    "evict_timeout": "200",
    "gc_retry_wait": "30",
    "gc_max_wait": "1800",
    "heartbeat_interval": "10",
    "heartbeat_timeout": "45",
    "cert_validity_days": "7",
    "import_buckets": "media-archive,media-partner",
    "public_url": "https://share.example.com",
    "api_throttle_rate_limit": "25.5",
    "api_throttle_burst_limit": "60",
    "edge_count": "3",
    "edge_max_count": "6",
    "edge_instance_type": "m6i.large",
    "edge_cache_gib": "200",
    "edge_network_target_mbps": "800",
    "domain_name": "cdn.example.com",
    "hosted_zone_id": "Z0123456789ABCDEFGHIJ",
    "alarm_email": "ops@example.com",
    "log_level": "DEBUG",
}


@pytest.fixture(scope="session")
def custom_synthesis(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    result = synthesize(
        tmp_path_factory.mktemp("infra-custom"), placeholder=True, context=CUSTOM_CONTEXT
    )
    print(f"\nfsnode infra: custom synthesis took {result.seconds:.1f} s")
    if not result.template:
        pytest.fail(f"synthesis wrote no template: {result.error}")
    return result


@pytest.fixture(scope="session")
def template(synthesis: Synthesis) -> Template:
    if not synthesis.template:
        pytest.fail(f"synthesis wrote no template: {synthesis.error}")
    return synthesis.assertions


@pytest.fixture(scope="session")
def resources(synthesis: Synthesis) -> Resources:
    return dict(synthesis.template.get("Resources", {}))


def of_type(resources: Resources, kind: str) -> Resources:
    return {key: value for key, value in resources.items() if value["Type"] == kind}
