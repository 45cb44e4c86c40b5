"""fsnode control plane: the app, its route blueprints (one module per resource, in
``chalicelib/routes_*.py``), and its Lambda handlers. Logic lives in ``chalicelib`` and
``fsnode_core``."""

from __future__ import annotations

from typing import Any

from chalice import Chalice
from chalicelib import gc as gc_workflow
from chalicelib import hashing, issuer, public_certificate, publisher, replication
from chalicelib import prune as prune_sweep
from chalicelib.http import normalize
from chalicelib.invoke import invoked
from chalicelib.observability import observe_background
from chalicelib.routes_files import bp as file_routes
from chalicelib.routes_keys import bp as key_routes
from chalicelib.routes_nodes import bp as node_routes
from chalicelib.routes_shares import bp as share_routes
from chalicelib.web import bp as web_pages

app = Chalice(app_name="fsnode")
app.register_middleware(normalize, "http")
app.register_middleware(observe_background, "pure_lambda")
app.register_middleware(observe_background, "scheduled")
app.register_blueprint(web_pages)  # the upload and player pages, /openapi.json
app.register_blueprint(file_routes)  # uploads, records, plans, delete, expiry, import
app.register_blueprint(share_routes)  # minting and opening file and folder shares
app.register_blueprint(node_routes)  # the edges' own routes; nodes, drain, cluster
app.register_blueprint(key_routes)  # the API-key authorizer; create, list, revoke keys


@app.lambda_function(name="plan_replication")
def plan_replication(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return replication.plan(event)


@app.lambda_function(name="warm_chunk")
def warm_chunk(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return replication.warm(event)


@app.lambda_function(name="pick_replica_target")
def pick_replica_target(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return replication.pick_target(event)


@app.lambda_function(name="report_replication")
def report_replication(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return replication.summarize(event)


@app.lambda_function(name="publish_file")
def publish_file(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return publisher.settle(str(event.get("file_id", "")))


@app.lambda_function(name="plan_hashing")
def plan_hashing(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return hashing.plan(event)


@app.lambda_function(name="hash_batch")
def hash_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return hashing.hash_batch(event)


@app.lambda_function(name="finish_hashing")
def finish_hashing(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return hashing.finish(event)


@app.lambda_function(name="gc_step")
def gc_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return gc_workflow.step(event)


# Invoked by the API handler for rights its role does not hold (chalicelib.invoke).
@app.lambda_function(name="issue_certificate")
def issue_certificate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return invoked(issuer.issue)(event)


@app.lambda_function(name="report_work")
def report_work(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return invoked(replication.apply_report)(event)


@app.lambda_function(name="refresh_public_certificate")
def refresh_public_certificate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return invoked(public_certificate.refresh)(event)


@app.schedule("rate(1 minute)", name="prune")
def prune(event: Any) -> dict[str, Any]:
    return prune_sweep.run()
