"""The local control-plane server's own refusals (a request its HTTP parser cannot read,
``HTTP/2.0`` on the request line: 505) in the JSON error shape, repeating nothing of the
request: its query may be a share's signature (PROTOCOL.md, "Canonical requests").

``chalice local`` answers them with ``http.server``'s HTML page, whose status line,
body and log line quote the request line.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

_CODES = {HTTPStatus.HTTP_VERSION_NOT_SUPPORTED: "http_version_not_supported"}


def install() -> None:
    """Patch ``chalice.local``'s request handler in this process (idempotent)."""
    from chalice.local import ChaliceRequestHandler

    if getattr(ChaliceRequestHandler, "_fsnode_json_errors", False):
        return
    original = ChaliceRequestHandler.send_error

    def send_error(
        self: Any, code: int, message: str | None = None, explain: str | None = None
    ) -> None:
        status = HTTPStatus(code)
        error_code = _CODES.get(status, "invalid_input" if code < 500 else "internal")
        body = {"error": {"code": error_code, "message": status.description or status.phrase}}
        self.error_content_type = "application/json"
        # %-formatting runs over the format: the JSON must not read as placeholders.
        self.error_message_format = json.dumps(body).replace("%", "%%")
        self.requestline = "-"  # the access log line would quote it
        # A refused request line leaves the version at HTTP/0.9, which would answer the
        # body alone, without status line or headers.
        self.request_version = "HTTP/1.0"
        original(self, code, None, None)  # the standard phrase, not the parser's text

    ChaliceRequestHandler.send_error = send_error
    ChaliceRequestHandler._fsnode_json_errors = True
