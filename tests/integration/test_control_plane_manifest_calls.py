"""AWS requests behind GET /nodes/{node_id}/files/{file_id}, counted with botocore's
event hooks on the control plane's own clients (a real moto server behind them).

An edge asks for a manifest on every miss of a file it has not seen, so the route
should cost one DynamoDB request (the file's GetItem) and the version manifest from S3,
which a process keeps (a published manifest is immutable): the node's credential, once
matched against the nodes table, is trusted for ``auth.VERIFIED_SECONDS``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.integration.control_plane_helpers import CHUNK, error_of, register, upload


@pytest.fixture()
def aws_calls(cp_client: Any) -> Iterator[list[str]]:
    """Every AWS request the control plane sends, as ``service.Operation``."""
    from chalicelib import auth, aws

    calls: list[str] = []

    def count(event_name: str, **_: Any) -> None:
        calls.append(event_name.split(".", 1)[1])

    auth.forget_verified()
    clients = [aws.client(service) for service in ("dynamodb", "secretsmanager", "s3")]
    for client in clients:
        client.meta.events.register("before-send", count)
    yield calls
    for client in clients:
        client.meta.events.unregister("before-send", count)
    auth.forget_verified()


def _manifest(api: Any, node: dict[str, Any], file_id: str, credential: str | None = None) -> Any:
    return api.call("GET", f"/nodes/{node['node_id']}/files/{file_id}", key=False,
                    headers={"authorization": f"Bearer {credential or node['credential']}"})


def test_a_manifest_is_one_query_once_the_node_is_known(
    cp_api: Any, cp_stack: Any, aws_calls: list[str]
) -> None:
    started, _ = upload(cp_api, os.urandom(3 * CHUNK + 7))
    node = register(cp_api, cp_stack)
    aws_calls.clear()
    answers = [_manifest(cp_api, node, started["file_id"]) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert len(answers[-1].json_body["chunks"]) == 4
    # The node's item is read once, the manifest once; no secret is read (their values
    # are cached too).
    assert aws_calls == ["dynamodb.GetItem", "dynamodb.GetItem", "s3.GetObject",
                         "dynamodb.GetItem", "dynamodb.GetItem"]


def test_a_credential_is_read_from_the_table_once_per_period(
    cp_api: Any, cp_stack: Any, aws_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import auth

    started, _ = upload(cp_api, os.urandom(CHUNK))
    node = register(cp_api, cp_stack)
    auth.forget_verified()  # as in a fresh Lambda container
    aws_calls.clear()
    for _ in range(2):
        assert _manifest(cp_api, node, started["file_id"]).status_code == 200
    assert aws_calls == ["dynamodb.GetItem", "dynamodb.GetItem", "s3.GetObject",
                         "dynamodb.GetItem"]
    monkeypatch.setattr(auth, "VERIFIED_SECONDS", 0.0)  # the period has passed
    aws_calls.clear()
    assert _manifest(cp_api, node, started["file_id"]).status_code == 200
    assert aws_calls == ["dynamodb.GetItem", "dynamodb.GetItem"]


def test_only_matching_credentials_are_remembered(
    cp_api: Any, cp_stack: Any, aws_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import auth

    started, _ = upload(cp_api, os.urandom(CHUNK))
    node = register(cp_api, cp_stack)
    other = register(cp_api, cp_stack)
    assert _manifest(cp_api, node, started["file_id"]).status_code == 200
    for _ in range(2):
        # Another node's credential (matched for that node a moment ago) is still
        # checked against this node's item, every time.
        aws_calls.clear()
        stolen = _manifest(cp_api, node, started["file_id"], other["credential"])
        assert stolen.status_code == 401 and error_of(stolen)["code"] == "unauthorized"
        assert aws_calls == ["dynamodb.GetItem"]
    # A node whose item is gone is refused once its credential's period is over.
    boto3.client("dynamodb").delete_item(TableName=cp_stack.env["FSNODE_NODES_TABLE"],
                                         Key={"node_id": {"S": node["node_id"]}})
    assert _manifest(cp_api, node, started["file_id"]).status_code == 200  # within it
    monkeypatch.setattr(auth, "VERIFIED_SECONDS", 0.0)
    assert _manifest(cp_api, node, started["file_id"]).status_code == 401
