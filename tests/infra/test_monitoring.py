"""Monitoring: the alarms and the metrics they watch."""

from __future__ import annotations

from aws_cdk.assertions import Match, Template


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
