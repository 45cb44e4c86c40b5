"""The web page's files as the control plane serves them (no browser needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from fsnode.localstack.stack import StackInfo


@pytest.mark.parametrize(
    ("path", "content_type", "needle"),
    [
        ("/", "text/html", 'id="file-input"'),
        ("/player?src=x", "text/html", "<video"),
        ("/web/app.js", "text/javascript", "crypto.subtle.digest"),
        ("/web/player.js", "text/javascript", "video.src"),
        ("/web/folders.js", "text/javascript", "webkitGetAsEntry"),
        ("/web/hls.min.js", "text/javascript", "MediaSource"),
        ("/web/dash.mediaplayer.min.js", "text/javascript", "MediaSource"),
        ("/web/style.css", "text/css", "#drop"),
    ],
)
def test_pages_are_served_without_a_key_and_with_a_strict_policy(
    stack: StackInfo, path: str, content_type: str, needle: str
) -> None:
    response = requests.get(f"{stack.api}{path}", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(content_type)
    assert needle in response.text
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # Nothing is loaded from elsewhere: no CDN links in the page.
    assert "//cdn" not in response.text and '<script src="http' not in response.text


@pytest.mark.parametrize(
    ("package", "built", "served", "major"),
    [
        ("hls.js", "dist/hls.min.js", "hls.min.js", "1."),
        ("dashjs", "dist/modern/umd/dash.mediaplayer.min.js", "dash.mediaplayer.min.js", "5."),
    ],
)
def test_the_player_loads_its_pinned_libraries_from_the_control_plane(
    stack: StackInfo, package: str, built: str, served: str, major: str
) -> None:
    """hls.js and dash.js come from this origin, at the versions web/package-lock.json
    pins."""
    lock = json.loads((Path(__file__).parents[2] / "web" / "package-lock.json").read_text())
    pinned = lock["packages"][f"node_modules/{package}"]["version"]
    assert pinned.startswith(major)
    page = requests.get(f"{stack.api}/player", timeout=30).text
    assert f'<script src="web/{served}"></script>' in page
    script = requests.get(f"{stack.api}/web/{served}", timeout=30)
    assert script.headers["Cache-Control"] == "public, max-age=86400"
    assert f'"{pinned}"' in script.text  # the library's version string
    installed = Path(__file__).parents[2] / "web" / "node_modules" / package
    assert script.content == (installed / built).read_bytes()
    # Both play through Media Source Extensions, a blob: URL the policy must admit.
    assert (
        "media-src * blob:"
        in requests.get(f"{stack.api}/player", timeout=30).headers["Content-Security-Policy"]
    )


def test_the_page_learns_the_chunk_size_it_hashes_by(stack: StackInfo) -> None:
    config = requests.get(f"{stack.api}/web/config.json", timeout=30).json()
    assert config["chunk_size"] == 4 * 1024 * 1024
    assert config["part_size"] % config["chunk_size"] == 0
    assert config["part_size"] >= 5 * 1024 * 1024
