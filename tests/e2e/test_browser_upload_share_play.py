"""In a real browser (headless Chromium): upload through the page, share, play, seek.

The page is served by the control plane; parts go to S3 (moto) straight from the
browser; the player plays the share URL, which redirects to an edge over HTTPS
(Chromium as set up in ``tests/e2e/browser.py``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from fsnode.localstack.stack import StackInfo
from tests.e2e.browser import enter_api_key, header, responses

SECONDS = 10
VIDEO = "document.getElementById('video')"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~10 s of H.264/AAC, index up front, noisy so it is several MiB (seeks need ranges)."""
    out = tmp_path_factory.mktemp("video") / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25:duration={SECONDS}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}",
            "-vf", "noise=alls=60:allf=t",
            "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "16M", "-maxrate", "16M",
            "-bufsize", "2M", "-pix_fmt", "yuv420p", "-g", "25",
            "-c:a", "aac", "-movflags", "+faststart", str(out),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    return out


def test_upload_share_and_play_a_video_through_an_edge(
    stack: StackInfo, video: Path, browser: Any
) -> None:
    wait = WebDriverWait(browser, 60)
    enter_api_key(browser, stack)

    # The hidden picker is what the drop zone feeds: setting its files is a drop.
    browser.find_element(By.ID, "file-input").send_keys(str(video))
    done = wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#uploads li.done, #uploads li.failed")
    )[0]
    assert "done" in done.get_attribute("class"), (
        done.text + browser.find_element(By.ID, "error").text
    )
    file_id = done.get_attribute("data-file-id")
    assert file_id
    progress = browser.find_element(By.CSS_SELECTOR, "#uploads li.done progress")
    assert progress.get_attribute("value") == progress.get_attribute("max")

    row = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-file-id='{file_id}']"))
    row.find_element(By.CLASS_NAME, "share-button").click()
    share_input = wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-file-id='{file_id}'] .share-url")
    )
    share_url = share_input.get_attribute("value")
    assert share_url.startswith(f"{stack.api}/s/{file_id}?")

    responses(browser)  # only the player's requests from here on
    row.find_element(By.CSS_SELECTOR, "a.play").click()
    wait.until(lambda d: d.execute_script(f"return {VIDEO}.readyState >= 1"))
    duration = browser.execute_script(f"return {VIDEO}.duration")
    assert SECONDS - 1 < duration < SECONDS + 1
    seen = _edge_ranges(browser, stack)
    assert seen, "the player did not fetch from an edge with 206"

    # Seek near the end before playing (preload=metadata fetched only the start).
    target = SECONDS - 3
    browser.execute_script(f"{VIDEO}.currentTime = {target};")
    wait.until(lambda d: d.execute_script(f"return !{VIDEO}.seeking && {VIDEO}.readyState >= 3"))
    after_seek = _edge_ranges(browser, stack)
    size = video.stat().st_size
    assert all(total == size for _, total in seen + after_seek)
    # A new ranged request that starts past what the player had read: the seek, at an edge.
    read_before = max((start for start, _ in seen), default=0)
    assert any(start > read_before for start, _ in after_seek), (seen, after_seek)

    # Plays: the current time advances from where it was sought.
    browser.execute_script(f"{VIDEO}.muted = true; {VIDEO}.play();")
    wait.until(lambda d: d.execute_script(f"return {VIDEO}.currentTime > {target} + 1"))
    assert not browser.execute_script(f"return {VIDEO}.error")


def _edge_ranges(driver: Any, stack: StackInfo) -> list[tuple[int, int]]:
    """(first byte, total size) of each 206 answered by an edge since the last call."""
    edges = tuple(edge.url + "/" for edge in stack.edges)
    out = []
    for response in responses(driver):
        if response["status"] == 206 and response["url"].startswith(edges):
            # Content-Range: bytes START-END/SIZE (RFC 9110, section 14.4)
            spec = (header(response, "content-range") or "").removeprefix("bytes ")
            span, _, total = spec.partition("/")
            out.append((int(span.split("-")[0]), int(total)))
    return out
