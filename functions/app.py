"""fsnode control plane: routes only. Logic lives in ``chalicelib`` and ``fsnode_core``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice import Chalice, Response
from chalicelib import (
    edge_work,
    folder_shares,
    hashing,
    issuer,
    nodes,
    openapi,
    public_certificate,
    publisher,
    replication,
    shares,
    upload_complete,
    uploads,
)
from chalicelib import gc as gc_workflow
from chalicelib import prune as prune_sweep
from chalicelib.http import json_body, json_errors, normalize
from chalicelib.invoke import invoked
from chalicelib.observability import observe_background
from chalicelib.routes_files import bp as file_routes
from chalicelib.routes_keys import api_key_authorizer
from chalicelib.routes_keys import bp as key_routes
from chalicelib.routes_nodes import bp as node_routes
from chalicelib.web import bp as web_pages

app = Chalice(app_name="fsnode")
app.register_middleware(normalize, "http")
app.register_middleware(observe_background, "pure_lambda")
app.register_middleware(observe_background, "scheduled")
app.register_blueprint(web_pages)  # the upload and player pages
app.register_blueprint(file_routes)  # plan, delete, expiry, import, rehash
app.register_blueprint(node_routes)  # renew, drain, cluster
app.register_blueprint(key_routes)  # the API-key authorizer; create, list, revoke keys

# Management routes: an API key, checked by the same authorizer in AWS and locally.
managed = api_key_authorizer


def route(path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``app.route`` with domain errors answered as JSON."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        return app.route(path, **kwargs)(json_errors(view))

    return decorate


def _request() -> Any:
    return app.current_request


@route("/nodes/register", methods=["POST"])
def register_node() -> dict[str, Any]:
    return nodes.register(json_body(_request()))


@route("/nodes/{node_id}/heartbeat", methods=["POST"])
def node_heartbeat(node_id: str) -> dict[str, Any]:
    request = _request()
    return nodes.heartbeat(node_id, request.headers, json_body(request))


@route("/nodes/{node_id}/work/{work_id}", methods=["POST"])
def node_work_report(node_id: str, work_id: str) -> dict[str, Any]:
    request = _request()
    return edge_work.report(node_id, work_id, request.headers, json_body(request))


@route("/nodes", methods=["GET"], authorizer=managed)
def list_nodes() -> dict[str, Any]:
    return nodes.list_nodes()


@route("/files", methods=["POST"], authorizer=managed)
def start_upload() -> dict[str, Any]:
    # It declares every chunk's and part's SHA-256: a larger body than other routes take.
    return uploads.start(json_body(_request(), limit=uploads.MAX_INIT_BODY))


@route("/files/{file_id}/parts", methods=["GET"], authorizer=managed)
def upload_part_urls(file_id: str) -> dict[str, Any]:
    return uploads.part_urls(file_id, _request().query_params)


@route("/files", methods=["GET"], authorizer=managed)
def list_files() -> dict[str, Any]:
    return uploads.list_page(_request().query_params)


@route("/files/{file_id}/complete", methods=["POST"], authorizer=managed)
def complete_upload(file_id: str) -> dict[str, Any]:
    return upload_complete.complete(file_id, json_body(_request()))


@route("/files/{file_id}", methods=["GET"], authorizer=managed)
def get_file(file_id: str) -> dict[str, Any]:
    return uploads.get(file_id)


@route("/files/{file_id}/share", methods=["POST"], authorizer=managed)
def share_file(file_id: str) -> dict[str, Any]:
    request = _request()
    base = shares.base_url(request.headers, request.context)
    return shares.mint(file_id, json_body(request), base)


@route("/shares", methods=["POST"], authorizer=managed)
def share_folder() -> dict[str, Any]:
    request = _request()
    return shares.mint_folder(json_body(request),
                              shares.base_url(request.headers, request.context))


@route("/s/{file_id}", methods=["GET", "HEAD"])
def open_share(file_id: str) -> Response:
    request = _request()
    location = shares.open_file_share(file_id, shares.query_pairs(request.query_params),
                                      request.headers, shares.source_ip(request.context))
    return Response(body="", status_code=307,
                    headers={"Location": location, "Cache-Control": "private, no-store"})


@route("/t/{token}", methods=["GET", "HEAD"])
def open_folder_root(token: str) -> Response:
    return _open_folder(token)


# API Gateway's greedy path; Chalice passes it as the keyword "proxy+" (the path itself
# is read from the request context, raw, so nothing is decoded twice).
@route("/t/{token}/{proxy+}", methods=["GET", "HEAD"])
def open_folder(token: str, **_path: str) -> Response:
    return _open_folder(token)


def _open_folder(token: str) -> Response:
    request = _request()
    raw = folder_shares.raw_path_after(str(request.context.get("path") or ""), token)
    status, headers, body = folder_shares.open_folder(
        token, raw, request.query_params or {}, request.headers,
        shares.source_ip(request.context))
    return Response(body="" if request.method == "HEAD" else body, status_code=status,
                    headers=headers)


@route("/openapi.json", methods=["GET"])
def openapi_document() -> dict[str, Any]:
    return openapi.document()


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
    return invoked(edge_work.apply_report)(event)


@app.lambda_function(name="refresh_public_certificate")
def refresh_public_certificate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return invoked(public_certificate.refresh)(event)


@app.schedule("rate(1 minute)", name="prune")
def prune(event: Any) -> dict[str, Any]:
    return prune_sweep.run()
