"""Headless Chromium for the browser tests, and what they read from it.

Chromium trusts exactly the edges' keys (``--ignore-certificate-errors-spki-list``
with each edge certificate's SPKI hash): the private CA is not installed system-wide.
The fixtures are made available to every e2e module by ``conftest.py``. The local
stack's bucket lets browsers PUT parts and read their ``ETag`` (its CORS rules).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fsnode.localstack.stack import StackInfo

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _require_chromium() -> None:
    """The browser tests fail, never skip, without their tools (make test installs them)."""
    missing = [
        name
        for name, present in (
            (CHROMIUM, Path(CHROMIUM).exists()),
            (CHROMEDRIVER, Path(CHROMEDRIVER).exists()),
            ("ffmpeg", shutil.which("ffmpeg") is not None),
        )
        if not present
    ]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: make test installs Debian's chromium, "
                    "chromium-driver and ffmpeg")  # fmt: skip


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
    _require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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


def responses(driver: Any) -> list[dict[str, Any]]:
    """Network.responseReceived events since the last call (the log drains as it is read)."""
    out = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived":
            out.append(message["params"]["response"])
    return out


def header(response: dict[str, Any], name: str) -> str | None:
    for key, value in response.get("headers", {}).items():
        if key.lower() == name:
            return str(value)
    return None


def enter_api_key(driver: Any, stack: StackInfo) -> None:
    """Open the upload page afresh and give it the stack's API key (a key an earlier
    test left in the tab's sessionStorage is dropped first)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{stack.api}/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{stack.api}/")
    key = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "api-key"))
    key.send_keys(stack.api_key)
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    assert driver.execute_script("return sessionStorage.getItem('fsnode-api-key')") == (
        stack.api_key
    )
