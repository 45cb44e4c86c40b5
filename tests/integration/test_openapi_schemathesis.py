"""schemathesis against the control plane's own ``/openapi.json``, over real HTTP.

The control plane runs as the local stack runs it (``fsnode.localstack.api_server``, a
separate process over the session's moto server). For every documented operation,
schemathesis generates valid and invalid requests, sends them with the right
credential, and checks each answer: never a 5xx, a documented status, content type,
headers and body schema, and schema-invalid input refused with a 4xx. Valid ids are
often swapped for a registered node and an uploaded file so requests get past the
"unknown id" answers into the handlers. Examples are bounded and derandomized: the run
takes seconds and fails the same way every time.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fsnode.localstack import processes
from tests.integration.control_plane_helpers import (
    chunk_hashes,
    ip_san,
    make_csr,
    part_hashes,
    register_body,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "functions"))
from chalicelib.openapi import PATHS  # noqa: E402
from chalicelib.openapi_builders import MANAGED, NODE, PUBLIC  # noqa: E402

__all__ = ["MANAGED", "NODE", "OPERATIONS", "PATHS", "PUBLIC"]  # test_openapi_document
OPERATIONS = [(method.upper(), path) for path, item in PATHS.items() for method in item]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Per operation; FSNODE_FUZZ_SCALE=20 (say) runs a deeper hunt by hand.
_SCALE = int(os.environ.get("FSNODE_FUZZ_SCALE", "1"))
EXAMPLES = {GenerationMode.POSITIVE: 12 * _SCALE, GenerationMode.NEGATIVE: 8 * _SCALE}


@dataclass(frozen=True)
class World:
    """The running control plane and what was made in it to aim requests at."""

    url: str
    api_key: str
    node_id: str
    credential: str
    file_id: str
    version: str


@pytest.fixture(scope="module")
def world(cp_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # The functions the control plane invokes (issue_certificate) run in this process,
    # inside the in-process moto server: they need its AWS settings here too.
    with pytest.MonkeyPatch.context() as patch:
        for name, value in cp_stack.aws_env.items():
            patch.setenv(name, value)
        yield from _world(cp_stack, tmp_path_factory)


def _world(cp_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    port = processes.free_port()
    env = {**os.environ, **cp_stack.aws_env, **cp_stack.env}
    child = processes.spawn(
        "control-plane",
        [
            sys.executable,
            "-m",
            "fsnode.localstack.api_server",
            "--port",
            str(port),
            "--functions-dir",
            str(ROOT / "functions"),
            "--schedule-seconds",
            "3600",
        ],
        env,
        tmp_path_factory.mktemp("schemathesis") / "api.log",
    )
    try:
        processes.wait_for_log_line(child, "api ready", timeout=60)
        url = f"http://127.0.0.1:{port}"
        node = requests.post(
            f"{url}/nodes/register",
            timeout=30,
            json=register_body(cp_stack, make_csr([ip_san("127.0.0.1")])),
        ).json()
        data = os.urandom(3000)
        managed = {"authorization": f"Bearer {cp_stack.api_key}"}
        started = requests.post(
            f"{url}/files",
            headers=managed,
            timeout=30,
            json={
                "path": "fuzz/seed.bin",
                "size": len(data),
                "content_type": "video/mp4",
                "chunk_sha256": chunk_hashes(data),
                "part_sha256": part_hashes(data),
            },
        ).json()
        etag = requests.put(
            started["parts"][0]["url"],
            data=data,
            timeout=30,
            headers=started["parts"][0]["headers"],
        ).headers["ETag"]
        done = requests.post(
            f"{url}/files/{started['file_id']}/complete",
            headers=managed,
            timeout=30,
            json={"parts": [{"part_number": 1, "etag": etag}]},
        )
        assert done.status_code == 200, done.text
        yield World(
            url=url,
            api_key=cp_stack.api_key,
            node_id=node["node_id"],
            credential=node["credential"],
            file_id=started["file_id"],
            version=started["version"],
        )
    finally:
        assert processes.stop([child.pid]) == []


@pytest.fixture(scope="module")
def api_schema(world: World) -> Any:
    return schemathesis.openapi.from_url(f"{world.url}/openapi.json")


def _aim(case: Any, world: World) -> dict[str, str]:
    """Point well-formed ids at real things (half the files), and pick the credential."""
    params = case.path_parameters or {}
    if params.get("node_id", "") and _is_id(params["node_id"]):
        params["node_id"] = world.node_id
    file_id = params.get("file_id", "")
    if case.method != "DELETE" and _is_id(file_id) and file_id[0] in "01234567":
        params["file_id"] = world.file_id
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and _is_id(body.get("version", "")):
        body["version"] = world.version
    security = case.operation.definition.raw.get("security")
    if security == NODE:
        return {"Authorization": f"Bearer {world.credential}"}
    if security == MANAGED:
        return {"authorization": f"Bearer {world.api_key}"}
    return {}


def _is_id(value: Any) -> bool:
    return (
        isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    )


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_generated_requests_never_get_a_5xx_or_an_undocumented_answer(
    api_schema: Any, world: World, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    raw = operation.definition.raw
    for mode, count in EXAMPLES.items():
        if mode is GenerationMode.NEGATIVE and not (
            raw.get("parameters") or raw.get("requestBody")
        ):
            continue  # nothing the caller sends can be invalid

        @settings(
            max_examples=count,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            headers = _aim(case, world)
            response = case.call(base_url=world.url, headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS)

        run()
