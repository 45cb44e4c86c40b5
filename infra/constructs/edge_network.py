"""The edge fleet's network: a VPC of public subnets, its ECS cluster, the ports and
the two security groups (the NLB's and the edges').

No NAT: instances reach the API, S3 (gateway endpoint) and ECR directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.nag import acknowledge

# The edge's own (unprivileged) port; the NLB and the 443 redirect both land here.
TLS_PORT = 8443
# /healthz and /metrics (plain HTTP): the NLB's health checks and the container's, and
# scrapers in the VPC; players cannot reach it (FSNODE_EDGE_ADMIN_PORT).
ADMIN_PORT = 9090
# What players connect to: the NLB listener, and each instance's public address.
LISTENER_PORT = 443
PUBLIC_PORT = 443


@dataclass(frozen=True, slots=True)
class EdgeNetwork:
    vpc: ec2.Vpc
    cluster: ecs.Cluster
    load_balancer_sg: ec2.SecurityGroup
    edge_sg: ec2.SecurityGroup


def edge_network(scope: Construct, *, log_retention: logs.RetentionDays) -> EdgeNetwork:
    """The fleet's network, built in ``scope`` (the fleet: its logical IDs stay)."""
    vpc = ec2.Vpc(
        scope,
        "Vpc",
        max_azs=2,
        nat_gateways=0,
        subnet_configuration=[
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC)
        ],
        gateway_endpoints={
            "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
        },
    )
    vpc.add_flow_log(
        "FlowLog",
        destination=ec2.FlowLogDestination.to_cloud_watch_logs(
            logs.LogGroup(
                scope,
                "FlowLogs",
                retention=log_retention,
                removal_policy=RemovalPolicy.DESTROY,
            )
        ),
        traffic_type=ec2.FlowLogTrafficType.REJECT,
    )
    cluster = ecs.Cluster(
        scope,
        "Cluster",
        vpc=vpc,
        container_insights_v2=ecs.ContainerInsights.ENABLED,
    )
    load_balancer_sg = _load_balancer_security_group(scope, vpc)
    edge_sg = _edge_security_group(scope, vpc, load_balancer_sg)
    return EdgeNetwork(vpc, cluster, load_balancer_sg, edge_sg)


def _load_balancer_security_group(scope: Construct, vpc: ec2.Vpc) -> ec2.SecurityGroup:
    group = ec2.SecurityGroup(
        scope,
        "LoadBalancerSg",
        vpc=vpc,
        description="fsnode edge NLB: HTTPS from anyone",
        allow_all_outbound=False,
    )
    group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(LISTENER_PORT), "HTTPS")
    acknowledge(
        group,
        "AwsSolutions-EC23",
        "A CDN front door must accept HTTPS from any client; only 443 is open.",
    )
    return group


def _edge_security_group(
    scope: Construct, vpc: ec2.Vpc, load_balancer_sg: ec2.SecurityGroup
) -> ec2.SecurityGroup:
    group = ec2.SecurityGroup(
        scope,
        "EdgeSg",
        vpc=vpc,
        description="fsnode edges: HTTPS from players and from the NLB",
        # The control plane's API, S3, ECR and ECS are public HTTPS endpoints.
        allow_all_outbound=True,
    )
    group.add_ingress_rule(
        ec2.Peer.any_ipv4(), ec2.Port.tcp(PUBLIC_PORT), "HTTPS from players (to the edge)"
    )
    group.connections.allow_from(load_balancer_sg, ec2.Port.tcp(TLS_PORT), "NLB (front door)")
    group.connections.allow_from(load_balancer_sg, ec2.Port.tcp(ADMIN_PORT), "NLB health checks")
    load_balancer_sg.connections.allow_to(group, ec2.Port.tcp(TLS_PORT), "to the edges' TLS port")
    load_balancer_sg.connections.allow_to(
        group, ec2.Port.tcp(ADMIN_PORT), "to the edges' health checks"
    )
    acknowledge(
        group,
        "AwsSolutions-EC23",
        (
            "Each edge serves players directly (placement redirects to it), so 443 is "
            "open to any client; the edge port and the health and metrics port are "
            "open only to the NLB."
        ),
    )
    return group
