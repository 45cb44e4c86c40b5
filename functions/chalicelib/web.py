"""The web page: upload files and folders by drag and drop, list and share files and
folders, play a share in a player (MP4 in ``<video>``, HLS natively or with hls.js,
DASH with dash.js);
and the OpenAPI document of every route (``/openapi.json``).

Plain HTML and JavaScript under ``chalicelib/web/``, served by the control plane itself so
API calls are same-origin; nothing comes from a CDN. The two libraries, hls.js and
dash.js, are pinned in ``web/package-lock.json`` and copied to ``chalicelib/web/vendor/``
by ``make web-assets`` (which ``make run``, ``test``, ``bench`` and ``synth`` run first). The
browser sends file parts straight to S3 through the presigned URLs and plays video from
the edges.
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
# hosts are only known at run time), and media plays from the edges. hls.js and dash.js
# feed the <video> through Media Source Extensions, a blob: URL (which `*` does not match).
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src *; media-src * blob:; worker-src 'self' blob:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
# The pinned library changes only with web/package-lock.json; the page's own files
# change with every deploy and are revalidated.
_VENDOR_CACHE = "public, max-age=86400"


@cache
def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


def _serve(name: str, cache_control: str = "no-cache") -> Response:
    return Response(
        body=_asset(name),
        status_code=200,
        headers={
            "Content-Type": _TYPES[Path(name).suffix],
            "Cache-Control": cache_control,
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


@bp.route("/web/folders.js", methods=["GET"])
def folders_script() -> Response:
    return _serve("folders.js")


@bp.route("/web/hls.min.js", methods=["GET"])
def hls_script() -> Response:
    """hls.js, the version pinned in web/package-lock.json (``make web-assets``)."""
    return _serve("vendor/hls.min.js", _VENDOR_CACHE)


@bp.route("/web/dash.mediaplayer.min.js", methods=["GET"])
def dash_script() -> Response:
    """dash.js (its media player build), the version pinned in web/package-lock.json."""
    return _serve("vendor/dash.mediaplayer.min.js", _VENDOR_CACHE)


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
