"""The local stack's API answers as the deployed API Gateway does: its limits and its
gateway responses, in fsnode's error shape."""

from __future__ import annotations

import requests

from fsnode.localstack import aws_limits
from fsnode.localstack.stack import StackInfo


def test_a_body_over_10_mb_is_refused_before_the_function(stack: StackInfo) -> None:
    answer = requests.post(
        f"{stack.api}/files",
        data=b"{" + b" " * aws_limits.API_GATEWAY_PAYLOAD_BYTES + b"}",
        headers={"authorization": f"Bearer {stack.api_key}", "content-type": "application/json"},
        timeout=120,
    )
    assert answer.status_code == 413, answer.text
    assert answer.headers["x-amzn-ErrorType"] == "REQUEST_TOO_LARGE"
    assert answer.json()["error"]["code"] == "payload_too_large"


def test_refusals_before_a_route_runs_are_gateway_responses(stack: StackInfo) -> None:
    missing = requests.get(f"{stack.api}/files", timeout=30)
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "unauthorized")
    assert missing.headers["x-amzn-ErrorType"] == "UNAUTHORIZED"
    nowhere = requests.get(f"{stack.api}/no/such/route", timeout=30)
    assert (nowhere.status_code, nowhere.json()["error"]["code"]) == (404, "not_found")
