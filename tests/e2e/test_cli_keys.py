"""``fsnode keys``: keys made, used, listed and revoked through the local stack's API,
whose authorizer caches its answers as API Gateway does."""

from __future__ import annotations

from fsnode.localstack.stack import StackInfo
from tests.e2e.cli_helpers import cli, cli_error


def test_a_created_key_works_with_the_cli_and_a_revoked_one_is_refused(
    stack: StackInfo,
) -> None:
    created = cli(stack, "keys", "create", "ci pipeline")
    assert created["role"] == "user" and created["key"].startswith("fsk_")
    # The new key, not the stack's admin key, through the same command line.
    assert "files" in cli(stack, "ls", "--api-key", created["key"])
    # A user key may not manage keys: API Gateway's policy refuses it.
    assert cli_error(stack, "keys", "list", "--api-key", created["key"])["code"] == "forbidden"

    listed = {k["key_id"]: k for k in cli(stack, "keys", "list")["keys"]}
    assert listed[created["key_id"]]["name"] == "ci pipeline"
    assert created["key"] not in str(listed)

    # A key revoked before its first use has no cached authorizer answer: refused at once.
    # (One already used is refused once API Gateway's cache of it expires: 60 s.)
    unused = cli(stack, "keys", "create", "revoked before use")
    revoked = cli(stack, "keys", "revoke", unused["key_id"])
    assert revoked["revoked_at"] is not None
    assert cli_error(stack, "ls", "--api-key", unused["key"])["code"] == "unauthorized"


def test_an_admin_key_made_by_the_cli_manages_keys(stack: StackInfo) -> None:
    admin = cli(stack, "keys", "create", "second operator", "--admin")
    assert admin["role"] == "admin"
    made = cli(stack, "keys", "create", "made by the second admin", "--api-key", admin["key"])
    assert (
        cli(stack, "keys", "revoke", made["key_id"], "--api-key", admin["key"])["revoked_at"]
        is not None
    )
    assert cli_error(stack, "keys", "revoke", "0" * 32)["code"] == "not_found"
