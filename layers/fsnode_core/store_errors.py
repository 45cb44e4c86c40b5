"""Turn botocore ``ClientError`` into domain errors at the store boundary."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from fsnode_core.errors import Conflict, FsnodeError, InvalidInput, Unavailable

_CONFLICT_CODES = {"ConditionalCheckFailedException", "TransactionConflictException"}


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ClientError (empty when absent)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def domain_error(exc: ClientError | BotoCoreError, action: str) -> FsnodeError:
    """The domain error that stands for an AWS failure during ``action``."""
    if isinstance(exc, BotoCoreError):
        return Unavailable(f"{action} failed: the store is unreachable", action=action)
    code = error_code(exc)
    if code in _CONFLICT_CODES:
        return Conflict(f"{action} lost a race with another writer", action=action)
    if code == "TransactionCanceledException":
        reasons = [r.get("Code", "") for r in exc.response.get("CancellationReasons", [])]
        if "ConditionalCheckFailed" in reasons:
            return Conflict(f"{action} lost a race with another writer", action=action)
    if code == "ValidationException":
        return InvalidInput(f"{action} was refused by the store", action=action, aws_code=code)
    return Unavailable(f"{action} failed", action=action, aws_code=code)
