"""Powertools logger, metrics and tracer for the control plane; metric names as constants."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "fsnode-control-plane"
# The deployed stack names the namespace (POWERTOOLS_METRICS_NAMESPACE); "fsnode" locally.
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "fsnode"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

METRIC_NODE_REGISTERED = "NodeRegistered"
METRIC_HEARTBEAT = "Heartbeat"
METRIC_UPLOAD_STARTED = "UploadStarted"
METRIC_UPLOAD_COMPLETED = "UploadCompleted"
METRIC_UPLOAD_REJECTED = "UploadRejected"
METRIC_SHARE_MINTED = "ShareMinted"
METRIC_SHARE_REDIRECT = "ShareRedirect"
METRIC_SHARE_DENIED = "ShareDenied"
METRIC_WORK_REPORTED = "WorkReported"
METRIC_UNDER_REPLICATED = "UnderReplicated"
METRIC_PLAN_SERVED = "PlanServed"
METRIC_FILE_DELETED = "FileDeleted"
METRIC_FILE_IMPORTED = "FileImported"
METRIC_NODE_RENEWED = "NodeRenewed"
METRIC_NODE_DRAINED = "NodeDrained"
METRIC_NODE_DRAIN_DONE = "NodeDrainCompleted"  # a draining node reported nothing in flight
# A share answered by the origin because no edge could take the viewer.
METRIC_ORIGIN_FALLBACK = "OriginFallback"
# Every refused request (4xx, by the app) and every answer of 5xx.
METRIC_REQUEST_REFUSED = "RequestRefused"
METRIC_SERVER_ERROR = "ServerError"


def flush_metrics() -> None:
    """Write the metrics a handler added as one EMF line (none: nothing written)."""
    if getattr(metrics, "metric_set", None):
        metrics.flush_metrics(raise_on_empty_metrics=False)


def observe_background(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice middleware for Lambda functions and schedules: what ``http.normalize`` does
    for routes, a correlation id (the Lambda request id) and metrics flushed per call."""
    context = getattr(event, "context", None)
    request_id = getattr(context, "aws_request_id", None) or uuid.uuid4().hex
    logger.set_correlation_id(request_id)
    try:
        return get_response(event)
    finally:
        flush_metrics()
