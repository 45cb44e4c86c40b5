"""Acknowledging cdk-nag findings (cdk-nag 3: CDK's ``Validations.acknowledge``).

cdk-nag 3 has no bulk suppression: a rule with several findings on one resource
(``AwsSolutions-IAM5[Action::s3:List*]``, ``...[Resource::*]``) needs one
acknowledgment per finding, each with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
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


def objects_finding(bucket: s3.IBucket) -> str:
    """The IAM5 finding for ``bucket.arn_for_objects("*")`` as cdk-nag spells it."""
    resource = bucket.node.default_child
    if isinstance(resource, CfnElement):
        return f"Resource::<{Stack.of(bucket).get_logical_id(resource)}.Arn>/*"
    return f"Resource::arn:<AWS::Partition>:s3:::{bucket.bucket_name}/*"
