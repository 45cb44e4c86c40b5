"""AWS's hard limits that the local stack enforces where moto and ``chalice local`` do not.

Each is the service's documented quota. The local stack refuses past it with the
service's own error, so a test fails here before a deploy fails there. Tests may lower
a limit through the environment variable named beside it (a count of events is tested
with a small count, as chunk counts are tested with small chunks); nothing raises one.
"""

from __future__ import annotations

import os

# Lambda, synchronous (RequestResponse) invocations: the request must be smaller than
# 6,291,456 bytes; a response may be 100 bytes more.
LAMBDA_REQUEST_BYTES = 6 * 1024 * 1024
LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024 + 100
# API Gateway REST APIs: a 10 MB payload and a 29 s integration timeout.
API_GATEWAY_PAYLOAD_BYTES = 10 * 1024 * 1024
API_GATEWAY_TIMEOUT_SECONDS = 29.0
# Step Functions standard workflows: 262,144 bytes of input or output per task, state or
# execution; 25,000 events in an execution's history.
STATES_PAYLOAD_BYTES = 256 * 1024
STATES_HISTORY_EVENTS = 25_000
# DynamoDB: 400 KB per item and 100 actions per transaction (moto refuses both itself).
DYNAMODB_ITEM_BYTES = 400 * 1024
DYNAMODB_TRANSACTION_ACTIONS = 100

# Lowered by tests only (see the module docstring).
API_GATEWAY_TIMEOUT_ENV = "FSNODE_LOCAL_API_TIMEOUT_SECONDS"
STATES_HISTORY_EVENTS_ENV = "FSNODE_LOCAL_STATES_HISTORY_EVENTS"


def lowered(env_name: str, limit: float) -> float:
    """``limit``, or a lower value a test set in ``env_name`` (never a higher one)."""
    raw = os.environ.get(env_name)
    if not raw:
        return limit
    value = float(raw)
    if not 0 < value <= limit:
        raise ValueError(f"{env_name} must be in (0, {limit:g}], not {raw!r}")
    return value
