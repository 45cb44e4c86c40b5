"""``FsnodeStack``: creates the constructs, passes names between them, grants access."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_cdk import Aws, CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import grants, paths
from infra.constructs.api_stage import ApiStage
from infra.constructs.control_plane import API_HANDLER_ID, ControlPlane
from infra.constructs.core_layer import CoreLayer
from infra.constructs.edge_fleet import EdgeFleet
from infra.constructs.monitoring import Monitoring
from infra.constructs.pki import Pki
from infra.constructs.public_domain import PublicDomain
from infra.constructs.public_names import PublicNames
from infra.constructs.secrets import Secrets
from infra.constructs.storage import Storage
from infra.constructs.workflows import Workflows, discover_definitions, state_machine_arn
from infra.settings import FsnodeSettings

PRUNE_FUNCTION = "Prune"
PRUNE_SCHEDULE = "rate(1 minute)"
REFRESH_FUNCTION = "RefreshPublicCertificate"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourcePaths:
    """Where the assets come from; tests point these at a scratch copy when needed."""

    functions_dir: Path = paths.FUNCTIONS_DIR
    edge_build_context: Path = paths.REPO_ROOT
    edge_dockerfile: str = paths.EDGE_DOCKERFILE
    tables_json: Path = paths.TABLES_JSON
    core_library_dir: Path = paths.CORE_LIBRARY_DIR
    layer_requirements: Path = paths.LAYER_REQUIREMENTS
    grants_json: Path = grants.GRANTS_JSON
    cache_dir: Path = field(default=paths.CACHE_DIR)


class FsnodeStack(Stack):
    """The whole of fsnode in one stack: storage, PKI, control plane, workflows, edges."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FsnodeSettings,
        sources: SourcePaths | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        sources = sources or SourcePaths()

        self.storage = Storage(
            self,
            "Storage",
            tables_json=sources.tables_json,
            existing_bucket_name=settings.existing_bucket_name,
            import_bucket_names=settings.import_buckets,
            removal_policy=removal_policy,
        )
        self.pki = Pki(
            self,
            "Pki",
            common_name=f"fsnode {self.stack_name} root CA",
            existing_ca_arn=settings.existing_ca_arn,
        )
        self.secrets = Secrets(self, "Secrets", removal_policy=removal_policy)
        self.public_names = PublicNames(
            self, "PublicNames", domain_name=settings.domain_name,
            hosted_zone_id=settings.hosted_zone_id, removal_policy=removal_policy)
        self.core_layer = CoreLayer(
            self,
            "CoreLayer",
            library_dir=sources.core_library_dir,
            requirements=sources.layer_requirements,
            cache_dir=sources.cache_dir,
        )

        definitions_dir = sources.functions_dir / "statemachines"
        machine_arns = {
            f"FSNODE_{name.upper()}_STATE_MACHINE_ARN": state_machine_arn(self, name)
            for name in discover_definitions(definitions_dir)
        }
        self.control_plane = ControlPlane(
            self,
            "ControlPlane",
            source_dir=sources.functions_dir,
            layer=self.core_layer.layer,
            work_dir=sources.cache_dir / "chalice",
            api_name=f"{self.stack_name}-api",
            log_level=settings.log_level,
            environment={
                **settings.control_plane_environment(),
                "FSNODE_NODES_TABLE": self.storage.nodes_table.table_name,
                "FSNODE_CHUNKS_TABLE": self.storage.chunks_table.table_name,
                "FSNODE_IDEMPOTENCY_TABLE": self.storage.idempotency_table.table_name,
                "FSNODE_BUCKET": self.storage.bucket.bucket_name,
                "FSNODE_IMPORT_BUCKETS": ",".join(
                    bucket.bucket_name for bucket in self.storage.readable_buckets
                ),
                "FSNODE_CA_ARN": self.pki.ca_arn,
                "FSNODE_JOIN_TOKEN_SECRET": self.secrets.join_token.secret_arn,
                "FSNODE_SIGNING_KEY_SECRET": self.secrets.signing_keyring.secret_arn,
                "FSNODE_ADMIN_KEY_SECRET": self.secrets.admin_key.secret_arn,
                "FSNODE_API_KEYS_TABLE": self.storage.api_keys_table.table_name,
                # Where edges' signed GetCallerIdentity requests are sent (docs/PROTOCOL.md).
                "FSNODE_STS_ENDPOINT": f"https://sts.{Aws.REGION}.{Aws.URL_SUFFIX}",
                **self.public_names.settings(),
                **machine_arns,
            },
        )
        self.workflows = Workflows(
            self,
            "Workflows",
            definitions_dir=definitions_dir,
            function_arn=self.control_plane.function_arn,
            substitutions={
                "NodesTableName": self.storage.nodes_table.table_name,
                "ChunksTableName": self.storage.chunks_table.table_name,
                "BucketName": self.storage.bucket.bucket_name,
            },
        )
        self.api_stage = ApiStage(
            self,
            "ApiStage",
            rest_api=self.control_plane.rest_api,
            gateway_responses_json=sources.functions_dir / "gateway_responses.json",
            throttle_rate_limit=settings.api_throttle_rate_limit,
            throttle_burst_limit=settings.api_throttle_burst_limit,
        )
        self._schedule_prune()
        if REFRESH_FUNCTION in self.control_plane.function_ids:
            self.public_names.schedule_refresh(
                self.control_plane.chalice.get_function(REFRESH_FUNCTION))
        grants_file = grants.load(sources.grants_json)
        self.control_plane.name_functions_for_the_api_handler(
            grants.invoked_by_api_handler(grants_file)
        )

        self.public_domain = (
            PublicDomain(
                self,
                "PublicDomain",
                domain_name=settings.domain_name,
                hosted_zone_id=settings.hosted_zone_id,
            )
            if settings.domain_name
            else None
        )
        self.edge_fleet = EdgeFleet(
            self,
            "EdgeFleet",
            build_context=sources.edge_build_context,
            dockerfile=sources.edge_dockerfile,
            join_token=self.secrets.join_token,
            api_url=self.control_plane.api_url,
            certificate=self.public_domain.certificate if self.public_domain else None,
            min_count=settings.edge_count,
            max_count=settings.edge_max_count,
            instance_type=settings.edge_instance_type,
            cache_gib=settings.edge_cache_gib,
            network_target_mbps=settings.edge_network_target_mbps,
            log_level=settings.log_level,
        )
        self._grant(grants_file)
        # Registration must be signed by this role (a GetCallerIdentity request).
        self.control_plane.chalice.add_environment_variable(
            "FSNODE_EDGE_ROLE_ARN", self.edge_fleet.task_role.role_arn, API_HANDLER_ID)
        if self.public_domain:
            self.public_domain.point_at(self.edge_fleet.load_balancer)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            api_name=self.control_plane.api_name,
            api_stage=self.control_plane.api_stage,
            edge_log_group=self.edge_fleet.log_group,
            edge_target_group=self.edge_fleet.target_group,
            edge_load_balancer=self.edge_fleet.load_balancer,
            alarm_email=settings.alarm_email,
        )

        CfnOutput(self, "ApiUrl", value=self.control_plane.api_url)
        CfnOutput(
            self,
            "EdgeLoadBalancerDns",
            value=self.edge_fleet.load_balancer.load_balancer_dns_name,
        )
        CfnOutput(
            self,
            "EdgeFrontDoorUrl",
            value=(
                self.public_domain.url
                if self.public_domain
                else f"https://{self.edge_fleet.front_door_host}"
            ),
        )
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(self, "CaArn", value=self.pki.ca_arn)
        # The bootstrap admin API key (read it with `aws secretsmanager get-secret-value`).
        CfnOutput(self, "AdminKeySecretArn", value=self.secrets.admin_key.secret_arn)
        CfnOutput(self, "BucketName", value=self.storage.bucket.bucket_name)

    def _schedule_prune(self) -> None:
        # The Chalice app normally schedules prune itself (@app.schedule); only a plain
        # @app.lambda_function(name="prune") needs a rule from here.
        plane = self.control_plane
        if PRUNE_FUNCTION in plane.function_ids and PRUNE_FUNCTION not in plane.scheduled_ids:
            events.Rule(
                self,
                "PruneSchedule",
                schedule=events.Schedule.expression(PRUNE_SCHEDULE),
                targets=[targets.LambdaFunction(plane.chalice.get_function(PRUNE_FUNCTION))],
            )

    def _grant(self, components: dict[str, list[dict[str, Any]]]) -> None:
        """Every role's permissions, from infra/grants.json (the one place they are
        named): each Lambda function's own role, and the edges' task role."""
        resources = grants.Resources(
            tables=self.storage.tables,
            origin=self.storage.bucket,
            imports=self.storage.import_buckets,
            ca_arn=self.pki.ca_arn,
            secrets={
                "join_token": self.secrets.join_token,
                "signing_keyring": self.secrets.signing_keyring,
                "admin_key": self.secrets.admin_key,
                **({"public_certificate": self.public_names.secret}
                   if self.public_names.secret else {}),
            },
            zone_arns=[self.public_names.zone_arn] if self.public_names.zone_arn else [],
            public_certificate_arns=([self.public_names.certificate.ref]
                                     if self.public_names.certificate else []),
            state_machine_arn=lambda name: state_machine_arn(self, name),
            executions_arn=self.workflows.execution_arns,
            function_arns=self.control_plane.function_arns,
        )
        roles: dict[str, iam.IRole] = {
            **self.control_plane.roles, "edge": self.edge_fleet.task_role
        }
        ungranted = sorted(set(self.control_plane.roles) - set(components))
        if ungranted:
            raise KeyError(
                f"functions without grants: {ungranted}; add them to {grants.GRANTS_JSON}"
            )
        for name, component in components.items():
            if name in roles:  # the stand-in app of some tests lacks functions
                grants.apply(roles[name], component, resources)
