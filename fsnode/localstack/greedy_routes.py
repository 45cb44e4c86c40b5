"""Greedy path parameters (``/t/{token}/{proxy+}``) in Chalice's local server.

API Gateway routes a trailing ``{name+}`` to any rest of the path; Chalice's local
route matcher only matches one segment per parameter (aws/chalice#2012), so a folder
share's ``/t/TOKEN/media/trailer/hi/index.m3u8`` would answer 404 locally while it
works deployed. ``install`` teaches the matcher the greedy form, as API Gateway does:
at least one character, any number of segments. The app reads the raw path from the
request context, the same there and here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from chalice import local

_MARK = "_fsnode_greedy"


def install() -> None:
    """Patch ``chalice.local.RouteMatcher`` once per process (the local server and the
    Chalice test client both use it)."""
    original = local.RouteMatcher.match_route
    if getattr(original, _MARK, False):
        return

    def match_route(self: Any, url: str) -> Any:
        try:
            return original(self, url)
        except ValueError:
            greedy = _match_greedy(self.route_urls, url)
            if greedy is None:
                raise
            return greedy

    setattr(match_route, _MARK, True)
    local.RouteMatcher.match_route = match_route  # type: ignore[method-assign]


def _match_greedy(route_urls: list[str], url: str) -> Any:
    parsed = urlparse(url)
    parts = parsed.path.split("/")
    for route in route_urls:
        pattern = route.split("/")
        last = pattern[-1]
        if not (last.startswith("{") and last.endswith("+}")) or len(parts) <= len(pattern):
            continue
        captured: dict[str, str] = {}
        for given, wanted in zip(parts, pattern[:-1], strict=False):
            if wanted.startswith("{") and wanted.endswith("}"):
                captured[wanted[1:-1]] = given
            elif given != wanted:
                break
        else:
            rest = "/".join(parts[len(pattern) - 1 :])
            if rest:
                captured[last[1:-1]] = unquote(rest)
                return local.MatchResult(
                    route, captured, parse_qs(parsed.query, keep_blank_values=True)
                )
    return None
