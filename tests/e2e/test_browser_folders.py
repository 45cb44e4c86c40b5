"""In a real browser (headless Chromium): the upload page uploads a folder with its
paths, mints a folder share, and its Play link plays the folder's HLS playlist."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from fsnode.localstack.stack import StackInfo
from tests.e2e import media
from tests.e2e.browser import enter_api_key
from tests.e2e.cli_helpers import cli

VIDEO = "document.getElementById('video')"


@pytest.fixture(scope="module")
def trailer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("picked") / "trailer"
    return folder, media.make_hls(folder)


def test_the_page_uploads_a_folder_with_its_paths_and_shares_it(
    stack: StackInfo, trailer: tuple[Path, list[str]], browser: Any
) -> None:
    folder, files = trailer
    prefix = f"web-{os.urandom(4).hex()}/"
    wait = WebDriverWait(browser, 120)
    enter_api_key(browser, stack)
    browser.find_element(By.ID, "prefix").send_keys(prefix)
    # A picked folder (webkitdirectory): its files carry paths starting with its name.
    browser.find_element(By.ID, "folder-input").send_keys(str(folder))
    row = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#folders li[data-folder]"))
    assert row.get_attribute("data-folder") == f"{prefix}trailer/"
    assert "done" in row.get_attribute("class"), browser.find_element(By.ID, "error").text
    uploads = browser.find_elements(By.CSS_SELECTOR, "#uploads li")
    assert sorted(li.get_attribute("data-name") for li in uploads) == sorted(
        f"{prefix}trailer/{relative}" for relative in files
    )
    listed = cli(stack, "ls", prefix)["files"]
    assert sorted(f["path"] for f in listed) == sorted(f"{prefix}trailer/{r}" for r in files)
    sizes = {f["path"]: f["size"] for f in listed}
    for relative in files:
        assert sizes[f"{prefix}trailer/{relative}"] == (folder / relative).stat().st_size

    row.find_element(By.CLASS_NAME, "share-folder").click()
    wait.until(lambda d: row.get_attribute("data-share-url"))
    share_url = row.get_attribute("data-share-url")
    assert share_url.startswith(f"{stack.api}/t/") and share_url.endswith(f"/{prefix}trailer/")
    assert row.find_element(By.CLASS_NAME, "share-url").get_attribute("value") == share_url
    play = row.find_element(By.CSS_SELECTOR, "a.play")
    src = parse_qs(urlsplit(play.get_attribute("href")).query)["src"][0]
    assert src == share_url + "master.m3u8"

    # The same folder shared from the form, by its prefix.
    browser.find_element(By.ID, "folder-prefix").send_keys(f"{prefix}trailer")
    browser.find_element(By.CSS_SELECTOR, "#folder-share-form button[type=submit]").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#folders li[data-share-url]")) == 2)

    play.click()  # the browser's own choice of engine
    wait.until(lambda d: d.execute_script(f"return {VIDEO}.readyState >= 1"))
    assert browser.execute_script(f"return {VIDEO}.dataset.engine") in ("native", "hls.js")
    browser.execute_script(f"{VIDEO}.muted = true; {VIDEO}.play();")
    wait.until(lambda d: d.execute_script(f"return {VIDEO}.currentTime > 3"))
    assert not browser.execute_script(f"return {VIDEO}.error")


def _drop_paths(driver: Any, element: Any, paths: list[Path]) -> None:
    """A real drag and drop of files or folders from the desktop (Chromium's DevTools
    protocol: the page sees the same DataTransfer entries as for a user's drop)."""
    box = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.left + r.width / 2, r.top + r.height / 2];",
        element,
    )
    data = {"items": [], "files": [str(p) for p in paths], "dragOperationsMask": 1}
    for kind in ("dragEnter", "dragOver", "drop"):
        driver.execute_cdp_cmd(
            "Input.dispatchDragEvent", {"type": kind, "x": box[0], "y": box[1], "data": data}
        )


def test_a_dropped_folder_keeps_its_paths_and_shares_without_a_play_link(
    stack: StackInfo, tmp_path: Path, browser: Any
) -> None:
    """DASH this time: nested entries are read in batches; the page has no DASH player."""
    folder = tmp_path / "dash"
    files = media.make_dash(folder)
    (folder / "extra" / "deeper").mkdir(parents=True)
    (folder / "extra" / "deeper" / "notes.vtt").write_text("WEBVTT\n")
    files.append("extra/deeper/notes.vtt")
    prefix = f"dropped-{os.urandom(4).hex()}/"
    wait = WebDriverWait(browser, 120)
    enter_api_key(browser, stack)
    browser.find_element(By.ID, "prefix").send_keys(prefix)
    _drop_paths(browser, browser.find_element(By.ID, "drop"), [folder])
    row = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#folders li[data-folder]"))
    assert row.get_attribute("data-folder") == f"{prefix}dash/"
    assert "done" in row.get_attribute("class"), browser.find_element(By.ID, "error").text
    listed = cli(stack, "ls", prefix)["files"]
    assert sorted(f["path"] for f in listed) == sorted(f"{prefix}dash/{r}" for r in files)
    types = {f["path"].removeprefix(f"{prefix}dash/"): f["content_type"] for f in listed}
    assert types["manifest.mpd"] == "application/dash+xml"
    assert types["extra/deeper/notes.vtt"] == "text/vtt"

    row.find_element(By.CLASS_NAME, "share-folder").click()
    wait.until(lambda d: row.get_attribute("data-share-url"))
    assert row.get_attribute("data-share-url").endswith(f"/{prefix}dash/")
    assert row.find_elements(By.CSS_SELECTOR, "a.play") == []
