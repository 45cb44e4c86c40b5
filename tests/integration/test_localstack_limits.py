"""The local stack's moto server refuses what AWS refuses, with AWS's errors: Lambda's
6 MB synchronous payloads, Step Functions' 256 KiB data and 25,000-event history,
DynamoDB's 400 KB items and 100-action transactions.

The history limit is lowered for the test (``FSNODE_LOCAL_STATES_HISTORY_EVENTS``):
25,000 events take moto's interpreter about half a minute; the counting is the same.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from fsnode.localstack import aws_limits, states_limits
from fsnode.localstack.aws_process import aws_server_process
from fsnode.localstack.resources import LOCAL_CREDENTIALS, ResourceBuilder
from fsnode.localstack.stack import FUNCTIONS_DIR, REPO_ROOT
from tests.helpers import finished_execution

HISTORY = 60
LOOP = {
    "StartAt": "Again",
    "States": {
        "Again": {"Type": "Pass", "Next": "Forever"},
        "Forever": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.stop", "BooleanEquals": True, "Next": "Done"}],
            "Default": "Again",
        },
        "Done": {"Type": "Succeed"},
    },
}
# Its one state's output is the padding chosen by the input (few events: the lowered
# history limit stays out of the way).
PADDED = {
    "StartAt": "Choose",
    "States": {
        "Choose": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.big", "BooleanEquals": True, "Next": "Big"}],
            "Default": "Small",
        },
        "Small": {"Type": "Pass", "Result": "x" * 1024, "End": True},
        "Big": {"Type": "Pass", "Result": "x" * (aws_limits.STATES_PAYLOAD_BYTES + 1), "End": True},
    },
}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with aws_server_process(
        tmp_path_factory.mktemp("aws") / "aws.log",
        PYTHONPATH=str(REPO_ROOT),
        **{aws_limits.STATES_HISTORY_EVENTS_ENV: str(HISTORY)},
    ) as url:
        ResourceBuilder(url, "us-east-1", FUNCTIONS_DIR)._enable_state_machine_execution()
        yield url


def _client(endpoint: str, service: str) -> Any:
    # The service is named at run time (the stubs type only literal names).
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
        **LOCAL_CREDENTIALS,
    )


def _refused(call: Any, code: str) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    assert error["Code"] == code, refused.value.response
    return str(error.get("Message", ""))


@pytest.fixture(scope="module")
def sized_function(endpoint: str) -> str:
    role = ResourceBuilder(endpoint, "us-east-1", FUNCTIONS_DIR).role("fsnode-sized")
    _client(endpoint, "lambda").create_function(
        FunctionName="sized",
        Runtime="python3.11",
        Role=role,
        Handler="tests.fixtures.sized.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
    )
    return "sized"


def test_lambda_refuses_a_request_over_6_mb(endpoint: str, sized_function: str) -> None:
    lam = _client(endpoint, "lambda")
    fits = json.dumps({"blob": "x" * 1000})
    assert (
        json.loads(lam.invoke(FunctionName=sized_function, Payload=fits)["Payload"].read())[
            "received"
        ]
        == 1000
    )
    big = json.dumps({"blob": "x" * aws_limits.LAMBDA_REQUEST_BYTES})
    message = _refused(
        lambda: lam.invoke(FunctionName=sized_function, Payload=big),
        "RequestEntityTooLargeException",
    )
    assert "6291456" in message


def test_lambda_fails_an_answer_over_6_mb(endpoint: str, sized_function: str) -> None:
    answer = _client(endpoint, "lambda").invoke(
        FunctionName=sized_function,
        Payload=json.dumps({"answer_bytes": aws_limits.LAMBDA_RESPONSE_BYTES}),
    )
    assert answer["FunctionError"] == "Unhandled"
    body = json.loads(answer["Payload"].read())
    assert body["errorType"] == "Function.ResponseSizeTooLarge"


def _machine(endpoint: str, definition: dict[str, Any]) -> str:
    role = f"arn:aws:iam::123456789012:role/fsnode-{uuid.uuid4().hex[:8]}"
    return str(
        _client(endpoint, "stepfunctions").create_state_machine(
            name=f"limits-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=role
        )["stateMachineArn"]
    )


def _run(endpoint: str, machine: str, payload: dict[str, Any]) -> dict[str, Any]:
    sfn = _client(endpoint, "stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=machine, name=uuid.uuid4().hex, input=json.dumps(payload)
    )["executionArn"]
    described = finished_execution(sfn, arn)
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return {**described, "events": events}


def test_step_functions_refuses_an_execution_input_over_256_kib(endpoint: str) -> None:
    machine = _machine(endpoint, LOOP)
    padded = json.dumps({"stop": True, "pad": "x" * aws_limits.STATES_PAYLOAD_BYTES})
    message = _refused(
        lambda: _client(endpoint, "stepfunctions").start_execution(
            stateMachineArn=machine, input=padded
        ),
        "ValidationException",
    )
    assert "262144" in message
    assert _run(endpoint, machine, {"stop": True})["status"] == "SUCCEEDED"


def test_step_functions_refuses_a_task_output_over_256_kib(endpoint: str) -> None:
    # Checked before the token, as the service validates the request first.
    _refused(
        lambda: _client(endpoint, "stepfunctions").send_task_success(
            taskToken="token", output=json.dumps({"pad": "x" * aws_limits.STATES_PAYLOAD_BYTES})
        ),
        "ValidationException",
    )


def test_a_state_output_over_256_kib_fails_the_execution(endpoint: str) -> None:
    machine = _machine(endpoint, PADDED)
    assert _run(endpoint, machine, {"big": False})["status"] == "SUCCEEDED"
    done = _run(endpoint, machine, {"big": True})
    assert (done["status"], done["error"]) == ("FAILED", "States.DataLimitExceeded")


def test_a_history_that_reaches_the_limit_fails_the_execution(endpoint: str) -> None:
    done = _run(endpoint, _machine(endpoint, LOOP), {"stop": False})
    assert (done["status"], done["error"]) == ("FAILED", "States.Runtime")
    assert done["cause"] == states_limits.HISTORY_CAUSE.format(limit=HISTORY)
    assert len(done["events"]) == HISTORY
    assert done["events"][-1]["type"] == "ExecutionFailed"
    assert states_limits.HISTORY_CAUSE.format(limit=25_000).endswith("(25000).")


def test_dynamodb_refuses_an_item_over_400_kb_and_a_transaction_over_100(
    endpoint: str,
) -> None:
    ddb = _client(endpoint, "dynamodb")
    ddb.create_table(
        TableName="limits",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )
    ddb.put_item(TableName="limits", Item={"pk": {"S": "fits"}, "v": {"S": "x" * 390_000}})
    message = _refused(
        lambda: ddb.put_item(
            TableName="limits",
            Item={"pk": {"S": "big"}, "v": {"S": "x" * (aws_limits.DYNAMODB_ITEM_BYTES + 1)}},
        ),
        "ValidationException",
    )
    assert "Item size" in message
    puts = [
        {"Put": {"TableName": "limits", "Item": {"pk": {"S": f"t{i}"}}}}
        for i in range(aws_limits.DYNAMODB_TRANSACTION_ACTIONS + 1)
    ]
    _refused(lambda: ddb.transact_write_items(TransactItems=puts), "ValidationException")
    ddb.transact_write_items(TransactItems=puts[: aws_limits.DYNAMODB_TRANSACTION_ACTIONS])
