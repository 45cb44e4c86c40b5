"""Id validation and the table layout shared by CDK and the local stack."""

from __future__ import annotations

import pytest
from fsnode_core.errors import InvalidInput
from fsnode_core.ids import check_id, new_id
from fsnode_core.tables import create_table_kwargs, table_layouts

from fsnode.localstack.resources import lambda_names, snake_case


def test_new_ids_pass_their_own_check() -> None:
    assert check_id(new_id()) != check_id(new_id())


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../../etc/passwd",
        "0" * 31,
        "0" * 33,
        "0" * 31 + "G",
        "0" * 30 + "/.",
        "A" * 32,
        "x" * 10**5,
    ],
)
def test_malformed_ids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        check_id(bad, "file_id")


def test_every_layout_becomes_a_create_table_call() -> None:
    for logical in table_layouts():
        kwargs = create_table_kwargs(logical, f"t-{logical}")
        defined = {a["AttributeName"] for a in kwargs["AttributeDefinitions"]}
        keys = {k["AttributeName"] for k in kwargs["KeySchema"]}
        for index in kwargs.get("GlobalSecondaryIndexes", []):
            keys |= {k["AttributeName"] for k in index["KeySchema"]}
        assert keys == defined


def test_asl_placeholders_name_chalice_functions() -> None:
    asl = '{"a": "${PlanReplicationFunctionArn}", "b": "${WarmChunkFunctionArn}", "c": "${X}"}'

    assert lambda_names(asl) == ["plan_replication", "warm_chunk"]
    assert snake_case("Gc") == "gc"
