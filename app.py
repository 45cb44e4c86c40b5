#!/usr/bin/env python3
"""CDK entry point: ``python app.py`` (or ``cdk synth``) writes the template to cdk.out/.

Environment differences come in here: the region from the environment, every
fsnode setting from CDK context (cdk.json, or ``-c key=value`` with the CLI).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.settings import FsnodeSettings
from infra.stack import FsnodeStack, SourcePaths

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"


def _cdk_json_context() -> dict[str, Any]:
    # The cdk CLI passes cdk.json's context itself; plain ``python app.py`` does not,
    # so read it here. Values the CLI passes still win (App gives them precedence).
    context: dict[str, Any] = json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]
    return context


def build_app(
    outdir: str | None = None,
    *,
    sources: SourcePaths | None = None,
    context: dict[str, Any] | None = None,
) -> cdk.App:
    """Build the app; ``outdir`` defaults to CDK_OUTDIR (set by the cdk CLI) or cdk.out."""
    app = cdk.App(
        outdir=outdir or os.environ.get("CDK_OUTDIR") or "cdk.out",
        context={**_cdk_json_context(), **(context or {})},
    )
    region = (
        os.environ.get("CDK_DEFAULT_REGION")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    # The account stays unresolved unless the CLI knows it: synth works offline.
    account = os.environ.get("CDK_DEFAULT_ACCOUNT")
    stack_name = app.node.try_get_context("stack_name") or "FsnodeStack"
    FsnodeStack(
        app,
        stack_name,
        settings=FsnodeSettings.from_context(app.node),
        sources=sources,
        env=cdk.Environment(account=account, region=region),
        description="fsnode: serverless CDN (S3 origin, Chalice control plane, EC2 edges)",
    )
    # cdk-nag 3 is a policy-validation plugin: an unacknowledged finding fails synth.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app


if __name__ == "__main__":
    build_app().synth()
