"""The edge fleet: one edge per EC2 instance, each reachable at its own public address.

Why not one load balancer name for all: placement (rendezvous hashing, then
distance) picks an edge per file so that its cache pays off, and the share
redirect and plans send the player to that edge's registered endpoint. Behind a
single name every redirect would land on whichever edge the load balancer picks.
So each instance has a public IPv4 address; the container's entrypoint
(``edge_node/discover_public_url.py``) reads the instance's public DNS name from
IMDSv2 and registers ``https://NAME:443``, and the CSR names exactly that host.

The Network Load Balancer stays as the fleet's front door for clients without a
placement (and for the health alarm): TCP passthrough on 443 by default, or,
given a public certificate (``domain_name``), a TLS listener that re-encrypts to
the edges. Passthrough cannot serve a verifiable name of its own: each edge's
certificate names only its own host (the control plane's CSR rule).

Each instance runs the edge as an ECS daemon task. The parts live in their own
modules: ``edge_network`` (VPC, cluster, ports, security groups), ``edge_instances``
(role, launch template, Auto Scaling) and ``edge_task`` (image, container). They are
functions that build into this construct, not constructs of their own: a construct
level would change every resource's logical ID, which replaces it on deploy.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.constructs.edge_instances import STATE_DIR, edge_instances
from infra.constructs.edge_network import (
    ADMIN_PORT,
    LISTENER_PORT,
    PUBLIC_PORT,
    TLS_PORT,
    edge_network,
)
from infra.constructs.edge_task import edge_task
from infra.nag import acknowledge

# The edge keeps a share of its filesystem free on its own; leave room for logs too.
_CACHE_SHARE = 0.9


class EdgeFleet(Construct):
    """VPC, ECS cluster, the edge Auto Scaling group and daemon service, and the NLB."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        build_context: Path,
        dockerfile: str,
        join_token: secretsmanager.ISecret,
        api_url: str,
        certificate: acm.ICertificate | None = None,
        min_count: int = 2,
        max_count: int = 10,
        instance_type: str = "c6i.large",
        cache_gib: int = 100,
        network_target_mbps: int = 400,
        log_level: str = "INFO",
        extra_environment: Mapping[str, str] | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        if not (build_context / dockerfile).is_file():
            raise FileNotFoundError(f"No Dockerfile at {build_context / dockerfile}")

        network = edge_network(self, log_retention=log_retention)
        self.vpc = network.vpc
        self.cluster = network.cluster
        self.instance_type = instance_type
        self.load_balancer_sg = network.load_balancer_sg
        self.edge_sg = network.edge_sg
        instances = edge_instances(
            self,
            network=network,
            instance_type=instance_type,
            cache_gib=cache_gib,
            min_count=min_count,
            max_count=max_count,
            network_target_mbps=network_target_mbps,
        )
        self.instance_role = instances.role
        self.auto_scaling_group = instances.auto_scaling_group

        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        cache_bytes = int(cache_gib * 1024**3 * _CACHE_SHARE)
        self.task_definition, self.container = edge_task(
            self,
            build_context=build_context,
            dockerfile=dockerfile,
            instance_type=instance_type,
            join_token=join_token,
            log_group=self.log_group,
            environment={
                "FSNODE_API_URL": api_url,
                "FSNODE_EDGE_HOST": "0.0.0.0",  # bind address on the instance
                "FSNODE_EDGE_PORT": str(TLS_PORT),
                "FSNODE_EDGE_ADMIN_PORT": str(ADMIN_PORT),
                # The entrypoint sets FSNODE_EDGE_PUBLIC_URL from instance metadata.
                "FSNODE_EDGE_PUBLIC_URL_SOURCE": "ec2-metadata",
                "FSNODE_EDGE_PUBLIC_PORT": str(PUBLIC_PORT),
                "FSNODE_STATE_DIR": STATE_DIR,
                "FSNODE_CACHE_MAX_BYTES": str(cache_bytes),
                "FSNODE_CAPACITY_BYTES": str(cache_bytes),
                "FSNODE_REGION": Stack.of(self).region,
                # boto3 signs S3 URLs for the bucket's region, not the global endpoint.
                "AWS_DEFAULT_REGION": Stack.of(self).region,
                "FSNODE_LOG_LEVEL": log_level,
                **(extra_environment or {}),
            },
        )
        self.task_role: iam.IRole = self.task_definition.task_role

        # One edge per instance: the instance's address is the edge's identity.
        self.service = ecs.Ec2Service(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            daemon=True,
            # A rolling deploy replaces half the edges at a time; the other half serves.
            min_healthy_percent=50,
            max_healthy_percent=100,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        )

        self.load_balancer = elbv2.NetworkLoadBalancer(
            self,
            "Nlb",
            vpc=self.vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[self.load_balancer_sg],
            cross_zone_enabled=True,
        )
        acknowledge(
            self.load_balancer,
            "AwsSolutions-ELB2",
            (
                "NLB access logs are written only for TLS listeners; without a domain the "
                "listener is TCP passthrough (the edge terminates TLS), so there is "
                "nothing to log. With a domain the front door carries only clients "
                "without a placement (redirects go to edges directly), so its logs are "
                "left off; edge metrics and VPC flow logs (rejects) remain."
            ),
        )
        protocol = elbv2.Protocol.TLS if certificate else elbv2.Protocol.TCP
        self.listener = self.load_balancer.add_listener(
            "Tls",
            port=LISTENER_PORT,
            protocol=protocol,
            certificates=(
                [elbv2.ListenerCertificate.from_certificate_manager(certificate)]
                if certificate
                else None
            ),
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS if certificate else None,
        )
        self.target_group = self.listener.add_targets(
            "Edges",
            port=TLS_PORT,
            # With a certificate the NLB re-encrypts to the edge (it does not check
            # the edge's private-CA certificate); without one, bytes pass through.
            protocol=protocol,
            targets=[self.auto_scaling_group],
            health_check=elbv2.HealthCheck(
                protocol=elbv2.Protocol.HTTP,
                port=str(ADMIN_PORT),
                path="/healthz",
                interval=Duration.seconds(10),
                healthy_threshold_count=2,
                unhealthy_threshold_count=2,
            ),
            # Long enough for a player to finish the range it is reading.
            deregistration_delay=Duration.seconds(30),
        )
        self.front_door_host: str = self.load_balancer.load_balancer_dns_name
