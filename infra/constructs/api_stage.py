"""The control plane's API stage: access logs, throttling, tracing and gateway responses.

Chalice writes the REST API as a SAM ``AWS::Serverless::Api``, which cdk-nag does not
inspect, so this construct sets what its API Gateway rules would ask for and
tests/infra checks it. API Gateway's own refusals (no or wrong key, a key on a route
it may not call, 10 MB, 29 s) answer in fsnode's error shape: the gateway responses
are read from ``functions/gateway_responses.json``, which the local API server uses too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, CfnResource, RemovalPolicy, Stack, Token
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.nag import acknowledge

# One JSON line per request; never a header (the Authorization header is the API key).
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "integrationLatency": "$context.integrationLatency",
        "principal": "$context.authorizer.principalId",
        "authError": "$context.authorizer.error",
        "errorType": "$context.error.responseType",
    },
    separators=(",", ":"),
)


def gateway_responses(path: Path) -> dict[str, Any]:
    """SAM ``GatewayResponses`` from the shared table: ``{TYPE: {StatusCode, templates}}``."""
    table: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return {
        kind: {
            "StatusCode": str(spec["status"]),
            "ResponseTemplates": {
                "application/json": json.dumps(
                    {"error": {"code": spec["code"], "message": spec["message"]}}
                )
            },
        }
        for kind, spec in table.items()
    }


class ApiStage(Construct):
    """Settings of the Chalice REST API's one stage, and API Gateway's CloudWatch role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        rest_api: CfnResource,
        gateway_responses_json: Path,
        throttle_rate_limit: float,
        throttle_burst_limit: int,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        rest_api.add_property_override(
            "AccessLogSetting",
            {"DestinationArn": self.access_logs.log_group_arn, "Format": ACCESS_LOG_FORMAT},
        )
        # Every method: a steady rate and a burst per stage (the account's 10,000 rps is
        # shared with every other API in the region).
        rest_api.add_property_override(
            "MethodSettings",
            [
                {
                    "ResourcePath": "/*",
                    "HttpMethod": "*",
                    "MetricsEnabled": True,
                    "ThrottlingRateLimit": throttle_rate_limit,
                    "ThrottlingBurstLimit": throttle_burst_limit,
                }
            ],
        )
        rest_api.add_property_override("TracingEnabled", True)
        rest_api.add_property_override(
            "GatewayResponses", gateway_responses(gateway_responses_json)
        )
        self.cloudwatch_role = self._cloudwatch_role()
        self.account = apigateway.CfnAccount(
            self, "Account", cloud_watch_role_arn=self.cloudwatch_role.role_arn
        )
        # API Gateway checks the role when the stage is created with access logs.
        rest_api.node.add_dependency(self.account)

    def _cloudwatch_role(self) -> iam.Role:
        # API Gateway writes access logs through one role per account and region (what
        # the AmazonAPIGatewayPushToCloudWatchLogs managed policy grants, on this
        # account's and region's log groups only).
        log_groups = Stack.of(self).format_arn(
            service="logs",
            resource="log-group",
            resource_name="*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role = iam.Role(
            self,
            "CloudWatchRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway (this account and region): write access logs",
            inline_policies={
                "PushToCloudWatchLogs": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            actions=[
                                "logs:CreateLogGroup",
                                "logs:CreateLogStream",
                                "logs:DescribeLogStreams",
                                "logs:PutLogEvents",
                                "logs:GetLogEvents",
                                "logs:FilterLogEvents",
                            ],
                            resources=[log_groups],
                        ),
                        iam.PolicyStatement(actions=["logs:DescribeLogGroups"], resources=["*"]),
                    ]
                )
            },
        )
        stack = Stack.of(self)
        region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            (
                "API Gateway's account-wide logging role writes to the log groups of every API "
                "in this account and region (log group names are chosen per stage); "
                "DescribeLogGroups has no resource type."
            ),
            ["Resource::*", f"Resource::arn:<AWS::Partition>:logs:{region}:{account}:log-group:*"],
        )
        return role
