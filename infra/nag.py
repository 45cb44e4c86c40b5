"""Acknowledging cdk-nag findings (cdk-nag 3: CDK's ``Validations.acknowledge``).

cdk-nag 3 has no bulk suppression: a rule with several findings on one resource
(``AwsSolutions-IAM5[Action::s3:List*]``, ``...[Resource::*]``) needs one
acknowledgment per finding, each with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_s3 as s3
from constructs import IConstruct


def acknowledge(
    construct: IConstruct,
    rule: str,
    reason: str,
    findings: Iterable[str] = (),
) -> None:
    """Acknowledge ``rule`` on ``construct`` (and its children), once per finding."""
    # The "AwsSolutions::" prefix names the validation plugin the rule belongs to.
    ids = [f"AwsSolutions::{rule}[{finding}]" for finding in findings] or [f"AwsSolutions::{rule}"]
    Validations.of(construct).acknowledge(*(Acknowledgment(id=i, reason=reason) for i in ids))


def resource_finding(scope: IConstruct, arn: str) -> str:
    """The IAM5 finding for a wildcard resource ``arn`` (a string that may hold tokens).

    cdk-nag flattens the resolved CloudFormation value: ``{"Ref": X}`` becomes
    ``<X>``, ``{"Fn::GetAtt": [X, Y]}`` becomes ``<X.Y>``, joins are concatenated
    (utils/flatten-cfn-reference in cdk-nag).
    """
    return f"Resource::{_flatten(Stack.of(scope).resolve(arn))}"


def objects_finding(bucket: s3.IBucket) -> str:
    """The IAM5 finding for ``bucket.arn_for_objects("*")`` as cdk-nag spells it."""
    return resource_finding(bucket, bucket.arn_for_objects("*"))


def _flatten(node: Any) -> str:
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return str(delimiter).join(_flatten(item) for item in items)
        if "Fn::Sub" in node:
            return _flatten(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{_flatten(resource)}.{_flatten(attribute)}>"
        if "Fn::ImportValue" in node:
            return _flatten(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))
