"""Powertools logger, metrics and tracer for the control plane; metric names as constants."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "fsnode-control-plane"
NAMESPACE = "fsnode"

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
