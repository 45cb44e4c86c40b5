"""CloudWatch alarms on the API, the fleet's health and replication."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.nag import acknowledge

NAMESPACE = "fsnode"
SERVICE = "fsnode"
# Names the control plane emits through Powertools Metrics (which adds ``service``).
DEAD_NODES = "DeadNodes"
UNDER_REPLICATED_CHUNKS = "UnderReplicatedChunks"
# Counted here, from the edge logs: every origin failure is logged with its error code.
EDGE_ORIGIN_ERRORS = "EdgeOriginErrors"


class Monitoring(Construct):
    """Alarms that notify one SNS topic (optionally an email address) on alarm and on OK.

    Each alarm is a public attribute, and :attr:`topic` takes more subscriptions
    (chat, paging) without touching the alarms.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api_name: str,
        api_stage: str,
        edge_log_group: logs.ILogGroup,
        edge_target_group: elbv2.NetworkTargetGroup,
        edge_load_balancer: elbv2.NetworkLoadBalancer,
        alarm_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "AlarmTopic", display_name="fsnode alarms", enforce_ssl=True)
        acknowledge(
            self.topic,
            "AwsSolutions-SNS2",
            (
                "Alarm notifications carry only alarm names, states and metric values. "
                "CloudWatch cannot publish to a topic under the AWS-managed SNS key, and a "
                "customer-managed key would cost more than the data it protects."
            ),
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self.api_5xx = cloudwatch.Alarm(
            self,
            "Api5xx",
            alarm_description="The control-plane API answered with 5xx errors.",
            metric=cloudwatch.Metric(
                namespace="AWS/ApiGateway",
                metric_name="5XXError",
                dimensions_map={"ApiName": api_name, "Stage": api_stage},
                statistic="Sum",
                period=Duration.minutes(5),
            ),
            threshold=5,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.dead_nodes = cloudwatch.Alarm(
            self,
            "DeadNodes",
            alarm_description="Prune found edge nodes that stopped heartbeating.",
            metric=self._app_metric(DEAD_NODES, "Maximum", Duration.minutes(1)),
            threshold=1,
            # Prune runs every minute; three runs in a row rule out a blip.
            evaluation_periods=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.under_replicated = cloudwatch.Alarm(
            self,
            "UnderReplicatedChunks",
            alarm_description="Hot chunks stayed below the replication factor.",
            metric=self._app_metric(UNDER_REPLICATED_CHUNKS, "Minimum", Duration.minutes(5)),
            threshold=1,
            # Replication normally catches up within minutes; a quarter hour does not.
            evaluation_periods=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.origin_error_filter = logs.MetricFilter(
            self,
            "EdgeOriginErrorFilter",
            log_group=edge_log_group,
            filter_pattern=logs.FilterPattern.any_term("origin_error", "origin_timeout"),
            metric_namespace=NAMESPACE,
            metric_name=EDGE_ORIGIN_ERRORS,
            metric_value="1",
            default_value=0,
        )
        self.edge_origin_errors = cloudwatch.Alarm(
            self,
            "EdgeOriginErrors",
            alarm_description="Edges failed to fetch from the S3 origin.",
            metric=self.origin_error_filter.metric(statistic="Sum", period=Duration.minutes(5)),
            threshold=10,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.no_healthy_edges = cloudwatch.Alarm(
            self,
            "NoHealthyEdges",
            alarm_description="The edge load balancer has no healthy target.",
            metric=cloudwatch.Metric(
                namespace="AWS/NetworkELB",
                metric_name="HealthyHostCount",
                dimensions_map={
                    "TargetGroup": edge_target_group.target_group_full_name,
                    "LoadBalancer": edge_load_balancer.load_balancer_full_name,
                },
                statistic="Minimum",
                period=Duration.minutes(1),
            ),
            threshold=1,
            evaluation_periods=3,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        self.alarms = [
            self.api_5xx,
            self.dead_nodes,
            self.under_replicated,
            self.edge_origin_errors,
            self.no_healthy_edges,
        ]
        action = cloudwatch_actions.SnsAction(self.topic)
        for alarm in self.alarms:
            alarm.add_alarm_action(action)
            # "Resolved" mails close the loop for whoever was paged.
            alarm.add_ok_action(action)

    @staticmethod
    def _app_metric(name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=NAMESPACE,
            metric_name=name,
            dimensions_map={"service": SERVICE},
            statistic=statistic,
            period=period,
        )
