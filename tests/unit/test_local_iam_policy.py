"""The local stack's IAM evaluation: what an identity policy allows, as IAM decides it."""

from __future__ import annotations

from typing import Any

import pytest

from fsnode.localstack import iam_policy

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/fsnode-chunks"
POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:Query"],
            "Resource": [TABLE, f"{TABLE}/index/*"],
        },
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::origin/meta/v1/*"},
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::origin",
            "Condition": {"StringLike": {"s3:prefix": ["meta/v1/tree/*"]}},
        },
        {"Effect": "Allow", "Action": "states:SendTask?uccess", "Resource": "*"},
    ],
}


@pytest.mark.parametrize(
    ("action", "resource", "context", "allowed"),
    [
        ("dynamodb:GetItem", TABLE, {}, True),
        ("DynamoDB:getitem", TABLE, {}, True),  # actions are case-insensitive
        ("dynamodb:GetItem", TABLE.upper(), {}, False),  # resources are not
        ("dynamodb:Query", f"{TABLE}/index/by_node", {}, True),
        ("dynamodb:PutItem", TABLE, {}, False),
        ("dynamodb:GetItem", TABLE + "-other", {}, False),
        ("s3:GetObject", "arn:aws:s3:::origin/meta/v1/tree/a", {}, True),
        ("s3:GetObject", "arn:aws:s3:::origin/files/a", {}, False),
        ("s3:ListBucket", "arn:aws:s3:::origin", {"s3:prefix": "meta/v1/tree/x"}, True),
        ("s3:ListBucket", "arn:aws:s3:::origin", {"s3:prefix": "files/"}, False),
        ("s3:ListBucket", "arn:aws:s3:::origin", {}, False),  # a condition on a missing key
        ("states:SendTaskSuccess", "*", {}, True),
        ("states:SendTaskFailure", "*", {}, False),
    ],
)
def test_allows(action: str, resource: str, context: dict[str, str], allowed: bool) -> None:
    assert iam_policy.allows([POLICY], action, resource, context) is allowed


def test_an_explicit_deny_wins_over_any_allow() -> None:
    deny = {"Statement": [{"Effect": "Deny", "Action": "dynamodb:*", "Resource": "*"}]}
    assert iam_policy.allows([POLICY], "dynamodb:GetItem", TABLE)
    assert not iam_policy.allows([POLICY, deny], "dynamodb:GetItem", TABLE)


def test_wildcards_are_literal_elsewhere() -> None:
    dotted = {
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::a.b/*"}
        ]
    }
    assert iam_policy.allows([dotted], "s3:GetObject", "arn:aws:s3:::a.b/k")
    assert not iam_policy.allows([dotted], "s3:GetObject", "arn:aws:s3:::aXb/k")
    # NotAction and unknown condition operators are refused rather than guessed.
    odd = {
        "Statement": [
            {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "*",
                "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            },
        ]
    }
    assert not iam_policy.allows(
        [odd], "s3:GetObject", "arn:aws:s3:::x/y", {"aws:SourceIp": "10.0.0.1"}
    )
