"""The control plane: the Chalice app in ``functions/``, its layer, settings and roles
(one per function)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, Aws, CfnResource, RemovalPolicy, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from chalice.cdk import Chalice
from chalice.utils import to_cfn_resource_name
from constructs import Construct

from infra.constructs.core_layer import LAMBDA_PYTHON, LAMBDA_RUNTIME
from infra.nag import acknowledge

# Chalice names its REST API and the API handler function this way in the SAM template.
REST_API_ID = "RestAPI"
API_HANDLER_ID = "APIHandler"
API_HANDLER = "api_handler"
API_STAGE = "api"
# Chalice creates no role: every function gets its own (``ControlPlane.roles``), which
# replaces this placeholder (tests/infra checks that none keeps it).
_NO_ROLE = "arn:aws:iam::000000000000:role/fsnode-replaced-per-function"


def require_lambda_python(version: tuple[int, ...] | None = None) -> None:
    """Refuse to synthesize under another Python than the functions' runtime.

    Chalice packages the app (and names its runtime) for the interpreter running synth,
    while the layer is built for ``LAMBDA_PYTHON``: a mismatch would deploy functions
    whose layer's compiled packages do not load.
    """
    running = tuple((version or sys.version_info)[:2])
    if running != LAMBDA_PYTHON:
        wanted = ".".join(map(str, LAMBDA_PYTHON))
        raise RuntimeError(
            f"Synthesize with Python {wanted}, not {'.'.join(map(str, running))}: the "
            f"Lambda functions and their layer run on python{wanted}, and Chalice packages "
            f"the app for the interpreter that runs synth (use `make synth`, which runs "
            f".venv's python{wanted})."
        )


@contextlib.contextmanager
def _chalice_packaging(source_dir: Path, work_dir: Path, region: str) -> Iterator[None]:
    """Let chalice package ``source_dir`` without leaving traces in this process.

    chalice.cdk writes ``chalice.out/`` under the current directory, imports the
    app as the top-level module ``app`` and copies the stage's environment
    variables into ``os.environ``. We give it a work directory, make sure ``app``
    resolves to ``source_dir/app.py``, and put the process back afterwards.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    _prune_old_packages(work_dir / "chalice.out")
    saved_environ = dict(os.environ)
    # The app and its chalicelib are imported fresh and dropped afterwards: Chalice
    # blueprints cannot be registered on two apps in one process (the second
    # registration loses its methods), and a test run may load the app itself too.
    saved_modules = {name: sys.modules.pop(name) for name in list(sys.modules) if _ours(name)}
    # chalice imports "app" by name: the functions folder must come first on the path,
    # ahead of the repository root (which has the CDK app.py) that test runners add.
    saved_path = list(sys.path)
    sys.path.insert(0, str(source_dir))
    importlib.invalidate_caches()
    try:
        # chalice asks boto3 for a region to pick the Lambda service principal.
        os.environ["AWS_DEFAULT_REGION"] = region
        with contextlib.chdir(work_dir):
            yield
    finally:
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_environ)
        for name in [name for name in sys.modules if _ours(name)]:
            del sys.modules[name]
        sys.modules.update(saved_modules)


def _ours(module_name: str) -> bool:
    return module_name == "app" or module_name.partition(".")[0] == "chalicelib"


def _prune_old_packages(out_dir: Path, max_age_seconds: float = 3600) -> None:
    # Every synth packages afresh into a new uuid folder; its assets are copied into
    # cdk.out at once, so old folders are only clutter.
    if not out_dir.is_dir():
        return
    cutoff = time.time() - max_age_seconds
    for entry in out_dir.iterdir():
        if entry.stat().st_mtime < cutoff:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _camel_to_snake(name: str) -> str:
    out: list[str] = []
    for index, char in enumerate(name):
        if char.isupper() and index and not name[index - 1].isupper():
            out.append("_")
        out.append(char.lower())
    return "".join(out)


# hls.js and dash.js as ``make web-assets`` places them (web/package-lock.json pins them).
PLAYER_LIBRARIES = (
    "chalicelib/web/vendor/hls.min.js",
    "chalicelib/web/vendor/dash.mediaplayer.min.js",
)


class ControlPlane(Construct):
    """``chalice.cdk.Chalice`` over ``functions/`` with fsnode's settings and layer.

    ``environment`` is the control-plane settings of docs/PROTOCOL.md; the
    Powertools variables are added here. Each function has a role of its own
    (:attr:`roles`, by function name) holding only logs and X-Ray: everything else
    comes from ``infra/grants.json`` (the stack applies it).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source_dir: Path,
        layer: lambda_.ILayerVersion,
        environment: Mapping[str, str],
        work_dir: Path,
        api_name: str,
        log_level: str = "INFO",
        memory_size: int = 512,
        timeout_seconds: int = 60,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        require_lambda_python()
        if not (source_dir / "app.py").is_file():
            raise FileNotFoundError(f"No Chalice app at {source_dir / 'app.py'}")
        # The player's libraries are built, not committed: a package without them would
        # serve a player that cannot play HLS or DASH.
        for library in PLAYER_LIBRARIES:
            if not (source_dir / library).is_file():
                raise FileNotFoundError(
                    f"No {source_dir / library}: run `make web-assets` (npm ci in web/)"
                )
        self.source_dir = source_dir
        stage_config: dict[str, Any] = {
            "api_gateway_stage": API_STAGE,
            "api_gateway_endpoint_type": "REGIONAL",
            "lambda_memory_size": memory_size,
            "lambda_timeout": timeout_seconds,
            "xray": True,
            "manage_iam_role": False,
            "iam_role_arn": _NO_ROLE,
            "layers": [layer.layer_version_arn],
            "environment_variables": {
                **environment,
                "POWERTOOLS_SERVICE_NAME": "fsnode",
                "POWERTOOLS_METRICS_NAMESPACE": "fsnode",
                "LOG_LEVEL": log_level,
            },
        }
        region = Stack.of(self).region
        with _chalice_packaging(
            source_dir, work_dir, "us-east-1" if Token.is_unresolved(region) else region
        ):
            self.chalice = Chalice(
                self, "Chalice", source_dir=str(source_dir), stage_config=stage_config
            )
        self.function_ids: list[str] = [
            child.node.id
            for child in self.chalice.sam_template.node.children
            if isinstance(child, CfnResource)
            and child.cfn_resource_type == "AWS::Serverless::Function"
        ]
        sam = self._sam_resources()
        self.scheduled_ids: list[str] = self._scheduled_function_ids(sam)
        # Function name (``api_handler``, the names in @app.lambda_function, authorizers,
        # schedules) -> logical id, from each function's handler string.
        self.functions: dict[str, str] = {
            _function_name(sam[logical_id]["Properties"]["Handler"]): logical_id
            for logical_id in self.function_ids
        }
        self.roles: dict[str, iam.Role] = {
            name: self._function_role(name, logical_id)
            for name, logical_id in self.functions.items()
        }
        self.function_arns: dict[str, str] = {
            name: self.chalice.get_resource(logical_id).get_att("Arn").to_string()
            for name, logical_id in self.functions.items()
        }
        self.rest_api = self.chalice.get_resource(REST_API_ID)
        # A stack-specific API name keeps the API Gateway metrics of two stacks apart.
        self.rest_api.add_property_override("Name", api_name)
        self.api_name = api_name
        self.api_stage = API_STAGE
        self.api_url = (
            f"https://{self.rest_api.ref}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}/{API_STAGE}/"
        )
        self.log_groups = [
            logs.LogGroup(
                self,
                f"{function_id}Logs",
                log_group_name=f"/aws/lambda/{self.chalice.get_resource(function_id).ref}",
                retention=log_retention,
                removal_policy=RemovalPolicy.DESTROY,
            )
            for function_id in self.function_ids
        ]

    def function_arn(self, placeholder_name: str) -> str:
        """The ARN of ``@app.lambda_function(name=snake(placeholder_name))``.

        ``PlanReplication`` names ``plan_replication`` (docs/PROTOCOL.md, naming).
        """
        logical_id = to_cfn_resource_name(_camel_to_snake(placeholder_name))
        if logical_id not in self.function_ids:
            raise KeyError(
                f"No Chalice function for {placeholder_name!r} (expected "
                f"@app.lambda_function(name={_camel_to_snake(placeholder_name)!r}) in "
                f"{self.source_dir / 'app.py'}); known: {sorted(self.function_ids)}"
            )
        arn: str = self.chalice.get_resource(logical_id).get_att("Arn").to_string()
        return arn

    def name_functions_for_the_api_handler(self, names: list[str]) -> None:
        """Give the API handler ``FSNODE_{NAME}_FUNCTION`` for each function it invokes."""
        for name in names:
            if name in self.functions:
                self.chalice.add_environment_variable(
                    f"FSNODE_{name.upper()}_FUNCTION",
                    self.chalice.get_resource(self.functions[name]).ref,
                    API_HANDLER_ID,
                )

    def _sam_resources(self) -> dict[str, Any]:
        # CfnInclude does not expose properties; the packaged SAM template does.
        # (chalice.cdk keeps its package directory in _sam_package_dir.)
        sam = json.loads(
            (Path(self.chalice._sam_package_dir) / "sam.json").read_text(encoding="utf-8")
        )
        resources: dict[str, Any] = sam["Resources"]
        return resources

    @staticmethod
    def _scheduled_function_ids(sam: dict[str, Any]) -> list[str]:
        return [
            logical_id
            for logical_id, resource in sam.items()
            if resource["Type"] == "AWS::Serverless::Function"
            and any(
                event.get("Type") == "Schedule"
                for event in resource["Properties"].get("Events", {}).values()
            )
        ]

    def _function_role(self, name: str, logical_id: str) -> iam.Role:
        """A role for one function: logs (this account and region's Lambda log groups)
        and X-Ray, inline so they exist before Lambda checks them when it creates the
        function; its grants come from infra/grants.json. The function is pinned to the
        layer's runtime."""
        stack = Stack.of(self)
        log_groups = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/lambda/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role = iam.Role(
            self,
            f"{logical_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"fsnode {name}: logs, traces and its grants from infra/grants.json",
            inline_policies={
                "LogsAndTraces": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                            resources=[log_groups],
                        ),
                        iam.PolicyStatement(
                            actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                            resources=["*"],
                        ),
                    ]
                )
            },
        )
        function = self.chalice.get_resource(logical_id)
        function.add_property_override("Role", role.role_arn)
        function.add_property_override("Runtime", LAMBDA_RUNTIME.name)
        region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            (
                "Lambda log groups are named after functions whose names CloudFormation "
                "generates after this role exists, so they can only be matched by prefix "
                "(this account and region); X-Ray trace writes support no resource-level "
                "permissions."
            ),
            [
                "Resource::*",
                f"Resource::arn:<AWS::Partition>:logs:{region}:{account}:log-group:/aws/lambda/*",
            ],
        )
        return role


def _function_name(handler: str) -> str:
    """``app.plan_replication`` -> ``plan_replication``; Chalice's API handler is
    ``app.app``."""
    attribute = handler.rpartition(".")[2]
    return API_HANDLER if attribute == "app" else attribute
