"""Storage: the origin bucket's guarantees and the tables built from tables.json."""

from __future__ import annotations

import json
import re
from typing import Any

import aws_cdk as cdk
from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk.assertions import Match, Template

from infra import grants, paths
from infra.constructs.storage import Storage

from .conftest import Resources, of_type

LAYOUT = json.loads(paths.TABLES_JSON.read_text())


def _origin(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (origin,) = (
        r for k, r in of_type(resources, "AWS::S3::Bucket").items() if k.startswith("StorageOrigin")
    )
    return dict(origin["Properties"])


def test_origin_bucket_is_private_encrypted_and_versioned(resources: Resources) -> None:
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


def test_origin_aborts_incomplete_multipart_uploads(resources: Resources) -> None:
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
        }
        if spec.get("ttl_attribute"):
            expected["TimeToLiveSpecification"] = {
                "AttributeName": spec["ttl_attribute"],
                "Enabled": True,
            }
        else:
            expected["TimeToLiveSpecification"] = Match.absent()
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
    template.resource_count_is("AWS::DynamoDB::Table", len(LAYOUT))
    assert storage.bucket.bucket_name == "media"


def test_origin_lets_browsers_upload_parts_and_read_their_etags(resources: Resources) -> None:
    # Mirrors the local stack's rule (fsnode/localstack/resources.py).
    assert _origin(resources)["CorsConfiguration"] == {
        "CorsRules": [
            {
                "AllowedHeaders": ["*"],
                "AllowedMethods": ["GET", "PUT", "HEAD"],
                "AllowedOrigins": ["*"],
                "ExposedHeaders": ["ETag"],
                "MaxAge": 3600,
            }
        ]
    }


def _statements(template: Template, role: iam.Role) -> list[dict[str, Any]]:
    role_id = Stack.of(role).get_logical_id(role.node.default_child)  # type: ignore[arg-type]
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if role_id in json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_import_buckets_are_read_only_for_the_api_handler_and_edges() -> None:
    stack = cdk.Stack(cdk.App(), "Bare")
    storage = Storage(
        stack,
        "Storage",
        tables_json=paths.TABLES_JSON,
        existing_bucket_name="origin",
        import_bucket_names=("media-a", "media-b", "media-a", "origin"),
    )
    # Duplicates and the origin itself are not repeated.
    assert [b.bucket_name for b in storage.readable_buckets] == ["origin", "media-a", "media-b"]
    functions = iam.Role(
        stack, "Functions", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com")
    )
    edges = iam.Role(stack, "Edges", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"))
    components = grants.load()
    on_buckets = grants.Resources(
        tables=storage.tables,
        origin=storage.bucket,
        imports=storage.import_buckets,
        ca_arn="arn:aws:acm-pca:us-east-1:1:certificate-authority/x",
        secrets={
            name: secretsmanager.Secret(stack, name)
            for name in ("join_token", "signing_keyring", "admin_key")
        },
        state_machine_arn=lambda name: name,
        executions_arn=lambda name: name,
    )
    grants.apply(functions, components["api_handler"], on_buckets)
    grants.apply(edges, components["edge"], on_buckets)
    template = Template.from_stack(stack)

    granted: dict[str, set[str]] = {}
    for statement in _statements(template, functions):
        if ":s3:::" not in json.dumps(statement["Resource"]):
            continue
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        targets = statement["Resource"]
        for target in targets if isinstance(targets, list) else [targets]:
            resource = json.dumps(target)
            bucket = re.search(r":s3:::([a-z0-9.-]+)", resource)
            assert bucket, resource
            granted.setdefault(bucket.group(1) + ("/*" if "/*" in resource else ""), set()).update(
                actions
            )
    assert granted == {
        # The API handler uploads to the origin but deletes nothing (gc_step does).
        "origin/*": {
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "s3:ListMultipartUploadParts",
        },
        "origin": {"s3:ListBucket"},
        "media-a/*": {"s3:GetObject", "s3:GetObjectVersion"},
        "media-a": {"s3:ListBucket"},
        "media-b/*": {"s3:GetObject", "s3:GetObjectVersion"},
        "media-b": {"s3:ListBucket"},
    }

    # Edges read data, the published objects, and list the tree: nothing else.
    data, published, tree = _statements(template, edges)
    assert data["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert [
        re.search(r":s3:::([a-z0-9.-]+/\*)", json.dumps(r)).group(1)  # type: ignore[union-attr]
        for r in data["Resource"]
    ] == ["origin/*", "media-a/*", "media-b/*"]
    assert published["Action"] == "s3:GetObject"
    assert ":s3:::origin/meta/v1/*" in json.dumps(published["Resource"])
    assert tree["Action"] == "s3:ListBucket"
    assert tree["Condition"] == {"StringLike": {"s3:prefix": ["meta/v1/tree/*"]}}
