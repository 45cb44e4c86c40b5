"""Storage: the origin bucket's guarantees and the tables built from tables.json."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Match, Template

from infra import paths
from infra.constructs.storage import Storage

from .conftest import of_type

LAYOUT = json.loads(paths.TABLES_JSON.read_text())


def _origin(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (origin,) = (
        r for k, r in of_type(resources, "AWS::S3::Bucket").items() if k.startswith("StorageOrigin")
    )
    return dict(origin["Properties"])


def test_origin_bucket_is_private_encrypted_and_versioned(resources: dict) -> None:
    props = _origin(resources)
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "LoggingConfiguration" in props


def test_origin_aborts_incomplete_multipart_uploads(resources: dict) -> None:
    rules = _origin(resources)["LifecycleConfiguration"]["Rules"]
    aborts = [
        r["AbortIncompleteMultipartUpload"] for r in rules if "AbortIncompleteMultipartUpload" in r
    ]
    assert len(aborts) == 1
    assert 1 <= aborts[0]["DaysAfterInitiation"] <= 7


def test_every_bucket_denies_plain_http(template: Template) -> None:
    template.all_resources_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_tables_follow_tables_json(template: Template) -> None:
    template.resource_count_is("AWS::DynamoDB::Table", len(LAYOUT))
    for spec in LAYOUT.values():
        keys = [{"AttributeName": spec["partition_key"]["name"], "KeyType": "HASH"}]
        if "sort_key" in spec:
            keys.append({"AttributeName": spec["sort_key"]["name"], "KeyType": "RANGE"})
        expected: dict[str, Any] = {
            "KeySchema": keys,
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": spec["ttl_attribute"], "Enabled": True},
        }
        if spec["indexes"]:
            expected["GlobalSecondaryIndexes"] = [
                Match.object_like(
                    {
                        "IndexName": index["name"],
                        "KeySchema": [
                            {"AttributeName": index["partition_key"]["name"], "KeyType": "HASH"},
                            {"AttributeName": index["sort_key"]["name"], "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                )
                for index in spec["indexes"]
            ]
        else:
            expected["GlobalSecondaryIndexes"] = Match.absent()
        template.has_resource_properties("AWS::DynamoDB::Table", expected)


def test_tables_are_retained(template: Template) -> None:
    template.all_resources("AWS::DynamoDB::Table", {"DeletionPolicy": "Retain"})


def test_existing_bucket_is_referenced_not_created() -> None:
    stack = cdk.Stack(cdk.App(), "Bare")
    storage = Storage(stack, "Storage", tables_json=paths.TABLES_JSON, existing_bucket_name="media")
    assert storage.access_log_bucket is None
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::S3::Bucket", 0)
    template.resource_count_is("AWS::DynamoDB::Table", 3)
    assert storage.bucket.bucket_name == "media"
