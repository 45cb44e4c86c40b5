"""Start Step Functions executions under deterministic names, and wait for one.

Names derive from what an execution acts on, so a repeated start (a retried request,
two overlapping prune runs) finds the first execution instead of starting another:
Step Functions refuses a second execution of one name (``ExecutionAlreadyExists``),
which here counts as success.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fsnode_core.store_errors import error_code

from chalicelib import aws
from chalicelib.observability import logger

NAME_LIMIT = 80  # Step Functions' execution-name limit


@dataclass(frozen=True, slots=True)
class Started:
    """The execution a start refers to; ``new`` is False when it already existed."""

    arn: str
    new: bool


def digest_name(prefix: str, *parts: str) -> str:
    """``prefix-HASH``: a stable name for inputs too long to spell out within 80 chars."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).hexdigest()
    return f"{prefix}-{digest}"[:NAME_LIMIT]


def execution_arn(machine_arn: str, name: str) -> str:
    """The ARN an execution of ``name`` has (Step Functions derives it the same way)."""
    return machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def start(machine_arn: str | None, name: str, payload: dict[str, Any]) -> Started | None:
    """Start ``name`` once; None when no machine is configured or the start failed.

    A failed start is logged, not raised: every caller has a later sweep (prune) that
    starts the same name again.
    """
    if not machine_arn:
        return None
    if len(name) > NAME_LIMIT:
        raise ValueError(f"execution name longer than {NAME_LIMIT}: {name}")
    try:
        answer = aws.client("stepfunctions").start_execution(
            stateMachineArn=machine_arn, name=name, input=json.dumps(payload)
        )
    except ClientError as exc:
        if error_code(exc) == "ExecutionAlreadyExists":
            return Started(execution_arn(machine_arn, name), new=False)
        logger.exception("could not start execution", extra={"execution": name})
        return None
    except BotoCoreError:
        logger.exception("could not start execution", extra={"execution": name})
        return None
    return Started(str(answer["executionArn"]), new=True)


def status(machine_arn: str | None, name: str) -> str | None:
    """The status of the execution ``name`` (RUNNING, SUCCEEDED, ...); None when there
    is none, no machine is configured, or the status cannot be read."""
    if not machine_arn:
        return None
    try:
        described = aws.client("stepfunctions").describe_execution(
            executionArn=execution_arn(machine_arn, name)
        )
    except ClientError as exc:
        if error_code(exc) != "ExecutionDoesNotExist":
            logger.exception("could not read an execution's status", extra={"execution": name})
        return None
    except BotoCoreError:
        logger.exception("could not read an execution's status", extra={"execution": name})
        return None
    return str(described["status"])


def wait(arn: str, timeout: float, poll: float = 0.5) -> dict[str, Any] | None:
    """The finished execution's description; None if it still runs after ``timeout``
    (or its status cannot be read)."""
    sfn = aws.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while True:
        try:
            described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        except (ClientError, BotoCoreError):
            # Waiting is a courtesy to the caller; the execution runs on regardless.
            logger.exception("could not read an execution's status", extra={"execution": arn})
            return None
        if described["status"] != "RUNNING":
            return described
        if time.monotonic() >= deadline:
            return None
        time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))
