"""Domain errors carry their HTTP status; AWS errors become domain errors in one place."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from fsnode_core import errors
from fsnode_core.store_errors import ConditionFailed, aws_errors


def _client_error(code: str, **extra: Any) -> ClientError:
    # A botocore error response; the extra keys (CancellationReasons, ...) vary by test.
    response: Any = {"Error": {"Code": code, "Message": "no"}, **extra}
    return ClientError(response, "PutItem")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInput, 400), (errors.Unauthorized, 401), (errors.Forbidden, 403),
        (errors.NotFound, 404), (errors.Conflict, 409), (errors.Gone, 410),
        (errors.Unavailable, 503), (errors.OriginError, 502), (errors.OriginTimeout, 504),
        (errors.IntegrityError, 502), (errors.PreconditionFailed, 412),
        (errors.FsnodeError, 500),
    ],
)  # fmt: skip
def test_each_error_class_carries_the_status_protocol_md_gives_its_code(
    error: type[errors.FsnodeError], status: int
) -> None:
    assert error("x").status == status


def _subclasses(cls: type[errors.FsnodeError]) -> list[type[errors.FsnodeError]]:
    return [sub for child in cls.__subclasses__() for sub in (child, *_subclasses(child))]


def test_every_error_with_its_own_code_names_its_own_status() -> None:
    # A new class that forgot its status would answer 500 for a client's mistake.
    forgot = [
        cls.__name__
        for cls in _subclasses(errors.FsnodeError)
        if "code" in vars(cls) and "status" not in vars(cls)
    ]
    assert forgot == []


def test_range_not_satisfiable_is_a_416_that_knows_the_size() -> None:
    refused = errors.RangeNotSatisfiable("x", size=10)
    assert (refused.status, refused.size) == (416, 10)


@pytest.mark.parametrize(
    ("raised", "expected", "code"),
    [
        (_client_error("ConditionalCheckFailedException"), ConditionFailed, "conflict"),
        (_client_error("TransactionConflictException"), errors.Conflict, "conflict"),
        (_client_error("TransactionCanceledException",
                       CancellationReasons=[{"Code": "None"}, {"Code": "ConditionalCheckFailed"}]),
         ConditionFailed, "conflict"),
        (_client_error("ValidationException"), errors.InvalidInput, "invalid_input"),
        (_client_error("ProvisionedThroughputExceededException"), errors.Unavailable,
         "unavailable"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), errors.Unavailable,
         "unavailable"),
    ],
)  # fmt: skip
def test_aws_errors_leave_as_domain_errors_naming_the_action(
    raised: Exception, expected: type[errors.FsnodeError], code: str
) -> None:
    with pytest.raises(expected) as caught, aws_errors("record replica"):
        raise raised
    assert caught.value.code == code and caught.value.details["action"] == "record replica"
    assert caught.value.__cause__ is raised


def test_a_failed_condition_becomes_what_the_store_says_it_means() -> None:
    with (
        pytest.raises(errors.NotFound, match="no such key") as caught,
        aws_errors("revoke api key", if_condition_fails=errors.NotFound("no such key")),
    ):
        raise _client_error("ConditionalCheckFailedException")
    assert caught.value.status == 404
    # Any other failure is still the store's error, not the condition's meaning.
    with (
        pytest.raises(errors.Unavailable),
        aws_errors("revoke api key", if_condition_fails=errors.NotFound("no such key")),
    ):
        raise _client_error("InternalServerError")


def test_other_exceptions_pass_through_untouched() -> None:
    with pytest.raises(KeyError), aws_errors("read node"):
        raise KeyError("a bug, not the store")
