"""Canonical requests at the edge (docs/PROTOCOL.md, "Canonical requests").

- Only HTTP/1.x: a request line naming ``HTTP/2.0`` gets 505 (HTTP/2 is negotiated by
  ALPN, never spelled on an HTTP/1 request line).
- A query parameter given twice is refused (400): which one counts would otherwise
  depend on the parser, and a share's query is what its signature proves.
- Control characters in the path or query (raw or percent-encoded) are refused (400).
- Requests the HTTP parser cannot read (a bad request line, bad headers) are answered
  in the JSON error shape, and neither the answer nor the log repeats the request: its
  query is a bearer credential.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

log = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away mid-answer
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_json(status: int, code: str, message: str) -> web.Response:
    """The JSON error shape, never cached (PROTOCOL.md, "Error shape")."""
    return web.json_response(
        {"error": {"code": code, "message": message}},
        status=status,
        headers={"Cache-Control": "no-store"},
    )


@web.middleware
async def canonical_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.version.major != 1:
        return error_json(
            505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served here"
        )
    problem = request_problem(request)
    if problem is not None:
        return error_json(400, "invalid_input", problem)
    return await handler(request)


def request_problem(request: web.Request) -> str | None:
    """Why the request's target is not canonical (None: it is). Never quotes a value."""
    if _CONTROL.search(request.path):
        return "the path has a control character"
    seen: set[str] = set()
    for name, value in request.query.items():  # every pair, repeats included
        if name in seen:
            return f"query parameter {_name(name)!r} appears more than once"
        seen.add(name)
        if _CONTROL.search(name) or _CONTROL.search(value):
            return "the query has a control character"
    return None


def _name(name: str) -> str:
    # A parameter name is not secret, but keep it short and printable in the answer.
    return _CONTROL.sub("?", name)[:32]


def parse_error(status: int, exc: BaseException | None) -> web.Response:
    """The answer to a request the parser refused: the JSON shape, a fixed message per
    kind, nothing of the request itself."""
    if isinstance(exc, LineTooLong):
        message = "the request line or a header is too long"
    elif isinstance(exc, HttpProcessingError) or status < 500:
        message = "the request could not be parsed as HTTP/1.1"
    else:
        message = "the request could not be served"
    code = "invalid_input" if status < 500 else "internal"
    log.info("refused an unparsable request status=%d kind=%s", status, type(exc).__name__)
    response = error_json(status, code, message)
    response.force_close()
    return response
