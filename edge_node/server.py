"""The edge's HTTP application: ``GET|HEAD|OPTIONS /f/{file_id}`` (file shares),
``GET|HEAD|OPTIONS /t/{TOKEN}/{path...}`` (folder shares), ``/healthz``, ``/metrics``.
Domain errors become HTTP answers in one place (``error_middleware``).

A share resolves to its file version in ``edge_node.share_targets``; the answer (304,
ranges, headers) is ``edge_node.file_answer``'s and its body ``edge_node.body_stream``'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from aiohttp import web
from fsnode_core.errors import FsnodeError, RangeNotSatisfiable

from edge_node import data_plane_metrics
from edge_node.body_stream import STREAMING
from edge_node.canonical import CLIENT_CLOSED_REQUEST, canonical_middleware
from edge_node.context import EDGE, EdgeContext
from edge_node.file_answer import respond
from edge_node.limits import final_status
from edge_node.response_headers import CORS_HEADERS
from edge_node.share_targets import Target, file_share, folder_share

log = logging.getLogger(__name__)

_CODE_BY_STATUS = {404: "not_found", 405: "invalid_input", 413: "invalid_input"}

_CORS_ALLOW_HEADERS = (
    "Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: FsnodeError) -> web.Response:
    """The one mapping from a domain error to an HTTP answer."""
    status = exc.status
    # no-store: an error for one signed URL must not be replayed from a cache.
    response = web.json_response(
        {"error": exc.to_dict()}, status=status, headers={"Cache-Control": "no-store"}
    )
    if isinstance(exc, RangeNotSatisfiable):
        # RFC 9110 section 15.5.17: a 416 names the current length.
        response.headers["Content-Range"] = f"bytes */{exc.size}"
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FsnodeError as exc:
        if request.get(STREAMING) and request.writer.output_size > 0:
            # The status line is gone already: all we can do is cut the
            # connection so the client sees a short body, not wrong bytes.
            # (Until the first body bytes the header block is only buffered, so
            # a failure before them is still answered with its own status.)
            log.error("failed mid-response path=%s error=%s", request.path, exc.message)
            raise
        if exc.code in ("origin_error", "origin_timeout", "integrity_error", "unavailable"):
            log.warning("request failed path=%s code=%s %s", request.path, exc.code, exc.message)
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODE_BY_STATUS.get(exc.status, "invalid_input")
        body = {"error": {"code": code, "message": exc.reason}}
        return web.json_response(body, status=exc.status, headers=_allow_header(exc))


def _allow_header(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


async def _add_cors(_request: web.Request, response: web.StreamResponse) -> None:
    # Share URLs are bearer URLs (no cookies), so any origin may read them.
    # (File answers carry them from the start; this covers every other answer.)
    headers = response.headers
    if "Access-Control-Expose-Headers" in headers:
        return
    for name, value in CORS_HEADERS.items():
        headers.setdefault(name, value)


def build_app(context: EdgeContext, *, admin: bool = True) -> web.Application:
    """The edge's app; ``admin=False`` leaves out ``/healthz`` and ``/metrics``, which
    ``build_admin_app`` then serves on a port of their own (FSNODE_EDGE_ADMIN_PORT)."""
    app = web.Application(middlewares=[canonical_middleware, error_middleware])
    app[EDGE] = context
    app.on_response_prepare.append(_add_cors)
    app.router.add_get("/f/{file_id}", serve_file)  # also answers HEAD
    app.router.add_route("OPTIONS", "/f/{file_id}", preflight)
    # A folder share: the token and the file's path below the folder, any depth.
    for route in ("/t/{token}", "/t/{token}/{path:.*}"):
        app.router.add_get(route, serve_folder)
        app.router.add_route("OPTIONS", route, preflight)
    if admin:
        _add_admin_routes(app)
    return app


def build_admin_app(context: EdgeContext) -> web.Application:
    """``/healthz`` and ``/metrics`` alone: for load balancer checks and scrapers, on a
    port players cannot reach."""
    app = web.Application(middlewares=[error_middleware])
    app[EDGE] = context
    _add_admin_routes(app)
    return app


def _add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)


async def healthz(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    return web.json_response(
        {
            "ok": True,
            "status": "ok",
            "node_id": edge.node_id,
            # The worker that answered (FSNODE_WORKERS processes serve the port).
            "pid": os.getpid(),
            "cache_bytes": edge.cache.used_bytes,
            "cache_free_bytes": edge.cache.free_bytes,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    text = edge.metrics.render(edge.cache, edge.origin) + data_plane_metrics.render(
        edge.published, edge.early, edge.prefetch
    )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight (Fetch standard): allow GET/HEAD with the Range headers."""
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
            "Access-Control-Allow-Headers": _CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": "86400",
        },
    )


async def serve_file(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /f/{file_id}``: a file share."""
    return await _counted(request, file_share)


async def serve_folder(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /t/{TOKEN}/{path...}``: a file below a folder share."""
    return await _counted(request, folder_share)


async def _counted(
    request: web.Request, resolve: Callable[[web.Request, EdgeContext], Awaitable[Target]]
) -> web.StreamResponse:
    edge = request.app[EDGE]
    edge.metrics.requests_in_flight += 1
    status = 500
    try:
        target = await resolve(request, edge)
        response = await respond(request, edge, target)
        status = await final_status(request, response)
        return response
    except FsnodeError as exc:
        status = exc.status
        raise
    except (ConnectionError, asyncio.CancelledError):
        # The client went away (or was dropped by a limit) mid-answer: not our error.
        status = CLIENT_CLOSED_REQUEST
        log.info("client closed the connection mid-response path=%s", request.path)
        raise
    finally:
        edge.metrics.requests_in_flight -= 1
        edge.metrics.responses[status] += 1
