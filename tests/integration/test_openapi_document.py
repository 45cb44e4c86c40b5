"""The OpenAPI document is complete and true: routes, auth, and a valid OpenAPI 3 file."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_spec_validator import validate

from tests.integration.test_openapi_schemathesis import MANAGED, NODE, OPERATIONS, PATHS, PUBLIC

SOME_ID = "0123456789abcdef" * 2


def _concrete(path: str) -> str:
    return (
        path.replace("{index}", "0")
        .replace("{node_id}", SOME_ID)
        .replace("{file_id}", SOME_ID)
        .replace("{work_id}", SOME_ID)
        .replace("{token}", "not-a-token")
        .replace("{proxy+}", "a/b")
    )


def test_the_document_lists_exactly_the_app_routes_and_is_valid(cp_api: Any, cp_app: Any) -> None:
    served = cp_api.call("GET", "/openapi.json", key=False)
    assert served.status_code == 200
    document = served.json_body
    validate(document)
    routes = {(method, path) for path, methods in cp_app.app.routes.items() for method in methods}
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert routes == documented == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_documented_auth_is_the_auth_enforced(
    cp_api: Any, cp_app: Any, method: str, path: str
) -> None:
    security = PATHS[path][method.lower()]["security"]
    assert security in (MANAGED, NODE, PUBLIC)
    # API Gateway runs the API-key authorizer only on routes that carry it.
    authorizer = cp_app.app.routes[path][method].authorizer
    assert (authorizer is not None) == (security == MANAGED), authorizer
    body = b"{}" if "requestBody" in PATHS[path][method.lower()] else None
    bare = cp_api.call(method, _concrete(path), body, key=False)
    if security == PUBLIC and path != "/nodes/register":
        assert bare.status_code != 401, bare.body
        return
    # Register's credential is the join token in its body: an empty body lacks it.
    assert bare.status_code == 401, (path, bare.body)
    assert json.loads(bare.body)["error"]["code"] == "unauthorized"
    if security == NODE:
        forged = cp_api.call(
            method, _concrete(path), body, key=False, headers={"authorization": "Bearer forged"}
        )
        assert forged.status_code == 401, forged.body
    if security == MANAGED:
        wrong = cp_api.call(
            method, _concrete(path), body, key=False, headers={"authorization": "Bearer wrong"}
        )
        assert wrong.status_code == 401, wrong.body
