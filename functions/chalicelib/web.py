"""The web page: upload by drag and drop, list and share files, play a share in a player;
and the OpenAPI document of every route (``/openapi.json``).

Plain HTML and JavaScript under ``chalicelib/web/`` (no build step, nothing from a CDN),
served by the control plane itself so API calls are same-origin. The browser sends
file parts straight to S3 through the presigned URLs and plays video from the edges.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from chalice import Blueprint, Response
from fsnode_core.chunks import part_size_for

from chalicelib import openapi
from chalicelib.http import json_routes
from chalicelib.settings import get_settings

bp = Blueprint(__name__)

_ASSETS = Path(__file__).resolve().parent / "web"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# Scripts and styles only from this app; bytes move to S3 and edges anywhere (their
# hosts are only known at run time), and media plays from the edges.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src *; media-src *; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@cache
def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


def _serve(name: str) -> Response:
    return Response(
        body=_asset(name),
        status_code=200,
        headers={
            "Content-Type": _TYPES[Path(name).suffix],
            "Cache-Control": "no-cache",
            "Content-Security-Policy": _CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@bp.route("/", methods=["GET"])
def index_page() -> Response:
    return _serve("index.html")


@bp.route("/player", methods=["GET"])
def player_page() -> Response:
    return _serve("player.html")


@bp.route("/web/app.js", methods=["GET"])
def app_script() -> Response:
    return _serve("app.js")


@bp.route("/web/player.js", methods=["GET"])
def player_script() -> Response:
    return _serve("player.js")


@bp.route("/web/style.css", methods=["GET"])
def stylesheet() -> Response:
    return _serve("style.css")


@bp.route("/web/config.json", methods=["GET"])
def page_config() -> dict[str, Any]:
    """What an uploader must know before ``POST /files``: the chunk size it hashes by."""
    chunk_size = get_settings().chunk_size
    return {"chunk_size": chunk_size, "part_size": part_size_for(chunk_size)}


@json_routes(bp)("/openapi.json", methods=["GET"])
def openapi_document() -> dict[str, Any]:
    return openapi.document()
