"""Powertools logger, metrics and tracer for the control plane; metric names as constants."""

from __future__ import annotations

import os

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
