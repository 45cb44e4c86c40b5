"""HLS and DASH folders made by ffmpeg play from one folder share, in real players:

- ``fsnode sync`` + ``fsnode share --prefix``; ffmpeg plays ``SHARE_URL/master.m3u8`` and
  ``SHARE_URL/manifest.mpd`` (control plane, then the edge over TLS checked against the
  local CA) and decodes exactly the frames it decodes from the local files;
- hls.js in Chromium plays the folder share past 10 s of media, from an edge;
- every bad path of a folder share is refused, at the control plane and at the edge,
  and HEAD answers on every kind of share URL at both.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import time
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from selenium.webdriver.support.ui import WebDriverWait

from fsnode.localstack.stack import StackInfo
from tests.e2e import media
from tests.e2e.browser import responses
from tests.e2e.cli_helpers import cli

VIDEO = "document.getElementById('video')"


@pytest.fixture(scope="module")
def folders(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``P/hls/``, ``P/dash/`` and a sibling ``P/hls2/`` synced in one run; each of the
    first two shared as a folder."""
    root = tmp_path_factory.mktemp("streams")
    hls = media.make_hls(root / "hls")
    dash = media.make_dash(root / "dash")
    (root / "hls2").mkdir()
    (root / "hls2" / "secret.m3u8").write_bytes(b"#EXTM3U\n# not in the hls/ folder\n")
    prefix = f"streams-{os.urandom(4).hex()}/"
    synced = cli(stack, "sync", str(root), "--prefix", prefix)
    assert len(synced["uploaded"]) == len(hls) + len(dash) + 1, synced
    shares = {
        name: cli(stack, "share", "--prefix", f"{prefix}{name}/", "--ttl", "3600")["share_url"]
        for name in ("hls", "dash")
    }
    return {"root": root, "prefix": prefix, "hls": hls, "dash": dash, "shares": shares}


def _edge_location(url: str, method: str = "GET") -> str:
    """Where the control plane sends a share URL (one redirect, to an edge)."""
    answer = requests.request(method, url, allow_redirects=False, timeout=30)
    assert answer.status_code == 307, (url, answer.status_code, answer.text)
    return str(answer.headers["Location"])


@pytest.mark.parametrize(("kind", "playlist"), [("hls", "master.m3u8"), ("dash", "manifest.mpd")])
def test_ffmpeg_plays_the_folder_share_frame_for_frame(
    stack: StackInfo, folders: dict[str, Any], kind: str, playlist: str
) -> None:
    share_url = folders["shares"][kind]
    assert share_url.endswith(f"/{folders['prefix']}{kind}/")
    # The player's first request goes to an edge, in the path form.
    location = urlsplit(_edge_location(share_url + playlist))
    assert location.scheme == "https" and location.path.startswith("/t/")
    assert location.netloc in {urlsplit(edge.url).netloc for edge in stack.edges}

    local = media.framemd5(str(folders["root"] / kind / playlist))
    assert len([line for line in local if not line.startswith("#")]) == 2 * 25 * media.SECONDS
    remote = media.framemd5(
        share_url + playlist, "-tls_verify", "1", "-ca_file", str(stack.ca_cert)
    )
    assert remote == local

    # ffmpeg passes its TLS options to the first request only (its HLS and DASH readers
    # open the rest without them): every file of the folder through the share, with
    # the edge's certificate checked against the CA, byte for byte.
    for relative in folders[kind]:
        got = requests.get(share_url + quote(relative), verify=str(stack.ca_cert), timeout=30)
        assert got.status_code == 200, (relative, got.text)
        assert got.content == (folders["root"] / kind / relative).read_bytes(), relative
        assert urlsplit(got.url).scheme == "https"


# (kind, playlist, player query, engine, its version in the page, files every stream
# needs by path fragment). engine=hls.js: this Chromium also plays HLS natively, which
# the page would prefer; no browser plays DASH natively, so .mpd goes to dash.js.
PLAYERS = [
    pytest.param(
        "hls", "master.m3u8", "engine=hls.js&", "hls.js", "Hls.version", "1.6.15",
        ("master.m3u8", "/index.m3u8", ".mp4", ".m4s"), id="hls.js",
    ),
    pytest.param(
        "dash", "manifest.mpd", "", "dash.js", "dashjs.MediaPlayer().create().getVersion()",
        "5.2.1", ("manifest.mpd", "/init-stream", "/chunk-stream"), id="dash.js",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "playlist", "query", "engine", "version_of", "version", "parts"), PLAYERS
)
def test_a_player_in_chromium_plays_the_folder_share_past_ten_seconds(
    stack: StackInfo,
    folders: dict[str, Any],
    browser: Any,
    kind: str,
    playlist: str,
    query: str,
    engine: str,
    version_of: str,
    version: str,
    parts: tuple[str, ...],
) -> None:
    src = folders["shares"][kind] + playlist
    responses(browser)  # only the player's requests from here on
    browser.get(f"{stack.api}/player?{query}src={quote(src, safe='')}")
    wait = WebDriverWait(browser, 90)
    wait.until(lambda d: d.execute_script(f"return {VIDEO}.readyState >= 1"))
    assert browser.execute_script(f"return {VIDEO}.dataset.engine") == engine
    assert browser.execute_script(f"return {version_of}") == version
    browser.execute_script(f"{VIDEO}.muted = true; {VIDEO}.play();")
    wait.until(lambda d: d.execute_script(f"return {VIDEO}.currentTime > 10"))
    assert not browser.execute_script(f"return {VIDEO}.error")
    edges = tuple(edge.url + "/t/" for edge in stack.edges)
    served = [
        r["url"]
        for r in responses(browser)
        if r["url"].startswith(edges) and r["status"] in (200, 206)
    ]
    # Every kind of file of the stream came from an edge, in the folder's path form
    # (which rendition or representation a player starts with is its own choice).
    for part in parts:
        assert any(part in urlsplit(url).path for url in served), (part, served)
    assert len({urlsplit(url).netloc for url in served}) == 1  # one edge per stream
    # The page's policy admits what the players do (MSE's blob: URL, hls.js's worker).
    refused = [
        e["message"]
        for e in browser.get_log("browser")
        if "Content Security Policy" in e["message"]
    ]
    assert refused == []


# ---- bad paths and HEAD, at the control plane and at the edge --------------------------

# (raw path after the folder, why it is refused): each must answer 400 invalid_input.
PATH_TRICKS = [
    ("../hls2/secret.m3u8", "dot-dot"),
    ("%2e%2e/hls2/secret.m3u8", "encoded dot-dot"),
    ("%2E%2E/hls2/secret.m3u8", "encoded dot-dot, upper case"),
    (".%2e/hls2/secret.m3u8", "half-encoded dot-dot"),
    ("v0/../../hls2/secret.m3u8", "normalizes outside the folder"),
    ("v0/../master.m3u8", "normalizes inside the folder, still a dot segment"),
    ("v0%2F..%2F..%2Fhls2%2Fsecret.m3u8", "encoded slashes"),
    ("v0//index.m3u8", "empty segment"),
    ("v0/index%00.m3u8", "NUL"),
    ("v0/index.m3u8%00", "trailing NUL"),
    ("./master.m3u8", "dot segment"),
    ("v0\\..\\..\\hls2\\secret.m3u8", "backslashes"),
    ("v0/%5c..%5c..%5chls2%5csecret.m3u8", "encoded backslashes"),
    ("v0/%ff.m4s", "not UTF-8"),
]


def _raw(url: str, method: str = "GET", ca: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    """One request with the path sent exactly as written (clients would normalize it)."""
    parts = urlsplit(url)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        assert ca is not None
        connection = http.client.HTTPSConnection(
            parts.netloc, timeout=30, context=ssl.create_default_context(cafile=ca)
        )
    else:
        connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""))
        answer = connection.getresponse()
        return answer.status, answer.read(), {k.lower(): v for k, v in answer.getheaders()}
    finally:
        connection.close()


def _bases(stack: StackInfo, share_url: str) -> dict[str, str]:
    """The folder's URL at the control plane and at the edge the control plane picks."""
    edge = _edge_location(share_url + "master.m3u8").removesuffix("master.m3u8")
    return {"control plane": share_url, "edge": edge}


@pytest.mark.parametrize(("trick", "why"), PATH_TRICKS, ids=[w for _, w in PATH_TRICKS])
def test_path_tricks_are_refused_at_the_control_plane_and_the_edge(
    stack: StackInfo, folders: dict[str, Any], trick: str, why: str
) -> None:
    for where, base in _bases(stack, folders["shares"]["hls"]).items():
        for method in ("GET", "HEAD"):
            status, body, _ = _raw(base + trick, method, stack.ca_cert)
            assert status == 400, (where, method, why, status, body)
            if method == "GET":
                assert json.loads(body)["error"]["code"] == "invalid_input", (where, body)


def test_a_folder_token_covers_its_folder_by_whole_segments(
    stack: StackInfo, folders: dict[str, Any]
) -> None:
    share_url = folders["shares"]["hls"]
    for where, base in _bases(stack, share_url).items():
        token_base = base[: base.index("/t/") + 3] + urlsplit(base).path.split("/")[2] + "/"
        # hls2/ starts with "hls" but is another folder; so is the parent.
        for outside in (
            f"{folders['prefix']}hls2/secret.m3u8",
            f"{folders['prefix']}x.m3u8",
            "other/master.m3u8",
        ):
            status, body, _ = _raw(token_base + outside, "GET", stack.ca_cert)
            assert status == 403, (where, outside, status, body)
            assert json.loads(body)["error"]["code"] == "forbidden"
        # A token altered by one character is refused.
        token = urlsplit(base).path.split("/")[2]
        forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        status, _, _ = _raw(base.replace(token, forged) + "master.m3u8", "GET", stack.ca_cert)
        assert status == 403, where


def test_head_answers_on_every_share_url(stack: StackInfo, folders: dict[str, Any]) -> None:
    share_url = folders["shares"]["hls"]
    local = folders["root"] / "hls"
    # The folder itself (its listing) at the control plane.
    assert requests.head(share_url, timeout=30).status_code == 200
    expected_types = {
        "master.m3u8": "application/vnd.apple.mpegurl",
        "v0/init_0.mp4": "video/mp4",
        "v0/seg000.m4s": "video/iso.segment",
    }
    for relative, content_type in expected_types.items():
        location = _edge_location(share_url + relative, "HEAD")
        assert location == _edge_location(share_url + relative, "GET")
        status, body, headers = _raw(location, "HEAD", stack.ca_cert)
        assert status == 200 and body == b"", (relative, status)
        assert int(headers["content-length"]) == (local / relative).stat().st_size
        assert headers["content-type"].split(";")[0] == content_type
    # A single-file share: HEAD at the control plane (307) and at the edge (200).
    file_id = next(
        f["file_id"]
        for f in cli(stack, "ls", folders["prefix"] + "hls/")["files"]
        if f["path"].endswith("/master.m3u8")
    )
    file_share = cli(stack, "share", file_id, "--ttl", "600")["share_url"]
    location = _edge_location(file_share, "HEAD")
    status, body, headers = _raw(location, "HEAD", stack.ca_cert)
    assert status == 200 and body == b""
    assert int(headers["content-length"]) == (local / "master.m3u8").stat().st_size


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_the_signature_covers_prefix_expiry_not_before_and_ip(
    stack: StackInfo, folders: dict[str, Any]
) -> None:
    """A token whose policy is changed (and the signature kept) opens nothing, at the
    control plane or the edge; the untouched token opens the file at both."""
    folder = folders["prefix"] + "hls/"
    share_url = cli(
        stack,
        "share",
        "--prefix",
        folder,
        "--ttl",
        "600",
        "--ip",
        "127.0.0.0/8",
        "--not-before",
        str(int(time.time()) - 60),
    )["share_url"]
    for where, base in _bases(stack, share_url).items():
        token = urlsplit(base).path.split("/")[2]
        payload, signature = token.split(".")
        fields = _unb64(payload).decode()
        assert "\nnbf=" in fields and "\nip=127.0.0.0/8" in fields
        opened = _raw(base + "master.m3u8", "HEAD", stack.ca_cert)[0]
        assert opened == (307 if where == "control plane" else 200), (where, opened)
        exp = int(fields.split("\nexp=")[1].split("\n")[0])
        nbf = int(fields.split("\nnbf=")[1].split("\n")[0])
        for changed in (
            fields.replace(f"pfx={folder}", f"pfx={folders['prefix']}"),
            fields.replace(f"exp={exp}", f"exp={exp + 3600}"),
            fields.replace(f"nbf={nbf}", f"nbf={nbf - 3600}"),
            fields.replace("ip=127.0.0.0/8", "ip=0.0.0.0/0"),
            fields.replace("\nip=127.0.0.0/8", ""),
        ):
            assert changed != fields
            forged = base.replace(token, f"{_b64(changed.encode())}.{signature}")
            # The forged policy's own folder, so only the signature can refuse it.
            target = forged + "master.m3u8"
            if "pfx=" + folder not in changed:
                target = forged + "hls/master.m3u8"
            status, body, _ = _raw(target, "GET", stack.ca_cert)
            assert status == 403, (where, changed, status, body)
            assert json.loads(body)["error"]["code"] == "forbidden"


def test_an_expired_folder_share_is_refused_at_both(
    stack: StackInfo, folders: dict[str, Any]
) -> None:
    # 15 s: time to follow the redirects before it expires, on a loaded machine.
    share = cli(stack, "share", "--prefix", folders["prefix"] + "hls/", "--ttl", "15")
    bases = _bases(stack, share["share_url"])
    deadline = share["expires"]
    while time.time() <= deadline + 1:  # the clock, not the system under test
        time.sleep(0.2)
    for where, base in bases.items():
        status, body, _ = _raw(base + "master.m3u8", "GET", stack.ca_cert)
        assert status == 403, (where, status, body)
