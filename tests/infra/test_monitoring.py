"""Monitoring: the alarms and the metrics they watch."""

from __future__ import annotations

from typing import cast

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template

from infra.constructs.monitoring import Monitoring

from .conftest import Resources, of_type


def test_alarms(template: Template) -> None:
    template.resource_count_is("AWS::CloudWatch::Alarm", 5)
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/ApiGateway",
            "MetricName": "5XXError",
            "Dimensions": Match.array_with([{"Name": "ApiName", "Value": "FsnodeStack-api"}]),
        },
    )
    for name in ("DeadNodes", "UnderReplicatedChunks"):
        template.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {
                "Namespace": "fsnode",
                "MetricName": name,
                # Powertools Metrics adds the service dimension to every metric.
                "Dimensions": [{"Name": "service", "Value": "fsnode"}],
            },
        )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm", {"Namespace": "fsnode", "MetricName": "EdgeOriginErrors"}
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"Namespace": "AWS/NetworkELB", "MetricName": "HealthyHostCount"},
    )


def test_edge_origin_errors_are_counted_from_edge_logs(template: Template) -> None:
    template.has_resource_properties(
        "AWS::Logs::MetricFilter",
        {
            "FilterPattern": Match.string_like_regexp("origin_error"),
            "MetricTransformations": [
                Match.object_like({"MetricNamespace": "fsnode", "MetricName": "EdgeOriginErrors"})
            ],
        },
    )


def test_every_alarm_notifies_the_topic_on_alarm_and_on_ok(
    template: Template, resources: Resources
) -> None:
    (topic_id,) = of_type(resources, "AWS::SNS::Topic")
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    assert alarms
    for key, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": topic_id}], key
        assert props["OKActions"] == [{"Ref": topic_id}], key
    # No address in cdk.json: the topic exists, nobody is subscribed yet.
    template.resource_count_is("AWS::SNS::Subscription", 0)
    # The topic takes only TLS publishes (enforce_ssl).
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_alarm_email_subscribes_to_the_topic() -> None:
    stack = cdk.Stack(cdk.App(), "Bare")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    load_balancer = elbv2.NetworkLoadBalancer(stack, "Nlb", vpc=vpc)
    target_group = elbv2.NetworkTargetGroup(stack, "Edges", vpc=vpc, port=8443)
    load_balancer.add_listener("Tcp", port=443, default_target_groups=[target_group])
    monitoring = Monitoring(
        stack,
        "Monitoring",
        api_name="api",
        api_stage="api",
        edge_log_group=logs.LogGroup(stack, "Logs"),
        edge_target_group=target_group,
        edge_load_balancer=load_balancer,
        alarm_email="ops@example.com",
    )
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::SNS::Subscription",
        {
            "Protocol": "email",
            "Endpoint": "ops@example.com",
            # A Topic's default child is its CfnTopic; the CDK types it as any construct.
            "TopicArn": {
                "Ref": stack.get_logical_id(cast(sns.CfnTopic, monitoring.topic.node.default_child))
            },
        },
    )
