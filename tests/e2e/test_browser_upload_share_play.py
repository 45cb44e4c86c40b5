"""In a real browser (headless Chromium): upload through the page, share, play, seek.

The page is served by the control plane; parts go to S3 (moto) straight from the
browser; the player plays the share URL, which redirects to an edge over HTTPS.
Chromium trusts exactly the edges' keys (``--ignore-certificate-errors-spki-list``
with each edge certificate's SPKI hash): the private CA is not installed system-wide.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fsnode.localstack.resources import LOCAL_CREDENTIALS
from fsnode.localstack.stack import StackInfo

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SECONDS = 10
VIDEO = "document.getElementById('video')"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists() and shutil.which("ffmpeg")),
    reason="needs Debian's chromium, chromium-driver and ffmpeg (make test installs them)",
)

# What fsnode/localstack/resources.py should set on the bucket: a browser may PUT parts
# from any page and must read each part's ETag to complete the upload.
BUCKET_CORS = {
    "CORSRules": [
        {
            "AllowedOrigins": ["*"],
            "AllowedMethods": ["GET", "PUT", "HEAD"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 3600,
        }
    ]
}


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


@pytest.fixture(scope="module")
def bucket_cors(stack: StackInfo) -> None:
    s3 = boto3.client(
        "s3", endpoint_url=stack.aws_endpoint, region_name=stack.region, **LOCAL_CREDENTIALS
    )
    s3.put_bucket_cors(Bucket=stack.bucket, CORSConfiguration=BUCKET_CORS)


def _spki_hash(url: str) -> str:
    parts = urlparse(url)
    assert parts.hostname and parts.port
    pem = ssl.get_server_certificate((parts.hostname, parts.port))
    key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
def browser(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    pins = ",".join(_spki_hash(edge.url) for edge in stack.edges)
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}",
        # Trust exactly these edge keys (honoured only with --user-data-dir).
        f"--ignore-certificate-errors-spki-list={pins}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _responses(driver: Any) -> list[dict[str, Any]]:
    """Network.responseReceived events since the last call (the log drains as it is read)."""
    out = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived":
            out.append(message["params"]["response"])
    return out


def _header(response: dict[str, Any], name: str) -> str | None:
    for key, value in response.get("headers", {}).items():
        if key.lower() == name:
            return str(value)
    return None


def test_upload_share_and_play_a_video_through_an_edge(
    stack: StackInfo, video: Path, bucket_cors: None, browser: Any
) -> None:
    wait = WebDriverWait(browser, 60)
    browser.get(f"{stack.api}/")
    key = wait.until(lambda d: d.find_element(By.ID, "api-key"))
    key.send_keys(stack.api_key)
    browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    assert browser.execute_script("return sessionStorage.getItem('fsnode-api-key')") == (
        stack.api_key
    )

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

    _responses(browser)  # only the player's requests from here on
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
    for response in _responses(driver):
        if response["status"] == 206 and response["url"].startswith(edges):
            # Content-Range: bytes START-END/SIZE (RFC 9110, section 14.4)
            spec = (_header(response, "content-range") or "").removeprefix("bytes ")
            span, _, total = spec.partition("/")
            out.append((int(span.split("-")[0]), int(total)))
    return out
