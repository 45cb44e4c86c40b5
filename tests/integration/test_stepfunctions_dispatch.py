"""Step Functions in the local stack: moto's interpreter, Lambda dispatched in-process."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from fsnode.localstack.aws_process import aws_server_process
from fsnode.localstack.resources import LOCAL_CREDENTIALS, ResourceBuilder
from fsnode.localstack.stack import FUNCTIONS_DIR, REPO_ROOT
from tests.helpers import finished_execution

RETRYING_MACHINE = {
    "StartAt": "Flaky",
    "States": {
        "Flaky": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "${FlakyFunctionArn}", "Payload.$": "$"},
            "ResultSelector": {"result.$": "$.Payload"},
            "Retry": [
                {
                    "ErrorEquals": ["TransientError"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 3,
                    "BackoffRate": 1.0,
                }
            ],
            "End": True,
        }
    },
}


@pytest.fixture(scope="module")
def aws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # PYTHONPATH: so the dispatcher can import tests.fixtures.flaky by its handler string.
    with aws_server_process(
        tmp_path_factory.mktemp("aws") / "aws.log", PYTHONPATH=str(REPO_ROOT)
    ) as endpoint:
        yield endpoint


def _client(endpoint: str, service: str) -> Any:
    # The service is named at run time (the stubs type only literal names).
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        **LOCAL_CREDENTIALS,
    )


@pytest.fixture(scope="module")
def flaky_machine(aws_server: str) -> str:
    """A state machine whose one Task retries a Lambda that fails on purpose."""
    builder = ResourceBuilder(aws_server, "us-east-1", FUNCTIONS_DIR)
    builder._enable_state_machine_execution()
    role = builder.role("fsnode-flaky")
    function_arn = _client(aws_server, "lambda").create_function(
        FunctionName="flaky",
        Runtime="python3.11",
        Role=role,
        Handler="tests.fixtures.flaky.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
    )["FunctionArn"]
    definition = json.dumps(RETRYING_MACHINE).replace("${FlakyFunctionArn}", function_arn)
    sfn = _client(aws_server, "stepfunctions")
    return str(
        sfn.create_state_machine(name="flaky", definition=definition, roleArn=role)[
            "stateMachineArn"
        ]
    )


def _run(endpoint: str, machine: str, payload: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    sfn = _client(endpoint, "stepfunctions")
    # Named explicitly: moto names every unnamed execution "None".
    execution = sfn.start_execution(
        stateMachineArn=machine, name=uuid.uuid4().hex, input=json.dumps(payload)
    )
    described = finished_execution(sfn, execution["executionArn"])
    history = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
    return described, history


def _failed_errors(history: list[Any]) -> list[str]:
    return [
        (e.get("taskFailedEventDetails") or e.get("lambdaFunctionFailedEventDetails"))["error"]
        for e in history
        if e["type"] in ("TaskFailed", "LambdaFunctionFailed")
    ]


def test_retry_block_is_honoured_through_in_process_dispatch(
    aws_server: str, flaky_machine: str, tmp_path: Path
) -> None:
    counter = tmp_path / "attempts"

    described, history = _run(aws_server, flaky_machine, {"counter": str(counter), "fail_times": 2})

    assert described["status"] == "SUCCEEDED", _failed_errors(history)
    assert json.loads(described["output"])["result"] == {"attempts": 3, "function": "flaky"}
    assert _failed_errors(history) == ["TransientError", "TransientError"]
    assert counter.read_text() == "3"


def test_retries_exhausted_fail_the_execution(
    aws_server: str, flaky_machine: str, tmp_path: Path
) -> None:
    counter = tmp_path / "attempts"

    described, history = _run(
        aws_server, flaky_machine, {"counter": str(counter), "fail_times": 10}
    )

    assert described["status"] == "FAILED"
    assert described.get("error") == "TransientError"
    # One first attempt and three retries, then the Retry block gives up.
    assert counter.read_text() == "4"
    assert len(_failed_errors(history)) == 4
