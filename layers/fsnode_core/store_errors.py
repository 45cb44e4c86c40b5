"""Turn botocore errors into domain errors at the store boundary, in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from fsnode_core.errors import Conflict, FsnodeError, InvalidInput, Unavailable


class ConditionFailed(Conflict):
    """A conditional write whose condition did not hold. Stores that expect it (a record
    already there, a node already dead) catch it and say what it means."""


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ClientError (empty when absent)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def domain_error(exc: ClientError | BotoCoreError, action: str) -> FsnodeError:
    """The domain error that stands for an AWS failure during ``action``."""
    if isinstance(exc, BotoCoreError):
        return Unavailable(f"{action} failed: the store is unreachable", action=action)
    code = error_code(exc)
    lost = f"{action} lost a race with another writer"
    if code == "ConditionalCheckFailedException":
        return ConditionFailed(lost, action=action)
    if code == "TransactionConflictException":
        return Conflict(lost, action=action)
    if code == "TransactionCanceledException":
        reasons = [r.get("Code", "") for r in exc.response.get("CancellationReasons", [])]
        if "ConditionalCheckFailed" in reasons:
            return ConditionFailed(lost, action=action)
    if code == "ValidationException":
        return InvalidInput(f"{action} was refused by the store", action=action, aws_code=code)
    return Unavailable(f"{action} failed", action=action, aws_code=code)


@contextmanager
def aws_errors(action: str, *, if_condition_fails: FsnodeError | None = None) -> Iterator[None]:
    """Run AWS calls; what they raise leaves as the domain error for ``action``, or as
    ``if_condition_fails`` when a conditional write's condition did not hold."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        error = domain_error(exc, action)
        if if_condition_fails is not None and isinstance(error, ConditionFailed):
            raise if_condition_fails from exc
        raise error from exc
