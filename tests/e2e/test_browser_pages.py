"""The web page's files as the control plane serves them (no browser needed)."""

from __future__ import annotations

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


def test_the_page_learns_the_chunk_size_it_hashes_by(stack: StackInfo) -> None:
    config = requests.get(f"{stack.api}/web/config.json", timeout=30).json()
    assert config["chunk_size"] == 4 * 1024 * 1024
    assert config["part_size"] % config["chunk_size"] == 0
    assert config["part_size"] >= 5 * 1024 * 1024
