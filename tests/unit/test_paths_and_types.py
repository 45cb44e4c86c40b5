"""The one path validator (``fsnode_core.paths``) and content types by extension."""

from __future__ import annotations

import pytest
from fsnode_core.content_types import content_type_for, is_playlist
from fsnode_core.errors import InvalidInput
from fsnode_core.paths import (
    MAX_PATH_BYTES,
    check_folder,
    check_path,
    from_url_path,
    is_under,
    is_valid_path,
    name_of,
    relative_to,
    url_path,
)
from hypothesis import given
from hypothesis import strategies as st

_segment = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/\\"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..") and is_valid_path(s))
paths = (
    st.lists(_segment, min_size=1, max_size=5)
    .map("/".join)
    .filter(lambda p: len(p.encode()) <= MAX_PATH_BYTES)
)


@pytest.mark.parametrize(
    "path",
    [
        "a",
        "media/trailer/master.m3u8",
        "x y/é/日本.ts",
        "a" * MAX_PATH_BYTES,
        "...",
        "a/.b/c.",
        "%2e%2e",
    ],
)
def test_valid_paths(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/a",
        "a/",
        "a//b",
        ".",
        "..",
        "a/../b",
        "a/./b",
        "./a",
        "a/..",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        "a\x85b",
        "a\x1fb",
        "\ud800",
        "a" * (MAX_PATH_BYTES + 1),
        "é" * (MAX_PATH_BYTES // 2 + 1),
        None,
        7,
    ],
)
def test_invalid_paths(path: object) -> None:
    assert not is_valid_path(path)
    with pytest.raises(InvalidInput) as caught:
        check_path(path, "path")
    assert caught.value.details["field"] == "path"


def test_folders() -> None:
    assert check_folder("") == "" and check_folder("media/trailer/") == "media/trailer/"
    for bad in ("media", "/", "media//", "../", "a/./"):
        with pytest.raises(InvalidInput):
            check_folder(bad)
    assert is_under("media/trailer/a.ts", "media/trailer/")
    assert not is_under("media/trailer2/a.ts", "media/trailer/")
    assert not is_under("media/trailer/", "media/trailer/")
    assert relative_to("m/t/a.ts", "m/") == "t/a.ts" and name_of("m/t/a.ts") == "a.ts"
    with pytest.raises(ValueError):
        relative_to("m2/a", "m/")


@given(paths)
def test_url_paths_round_trip(path: str) -> None:
    encoded = url_path(path)
    assert encoded.isascii()
    assert from_url_path(encoded) == path
    assert encoded.count("/") == path.count("/")


@pytest.mark.parametrize("raw", ["a%2Fb", "a%2fb", "a%5Cb", "a%zz", "a%2", "%ff", "a%"])
def test_url_paths_refuse_ambiguity(raw: str) -> None:
    with pytest.raises(InvalidInput):
        from_url_path(raw)


def test_url_paths_decode_once() -> None:
    assert from_url_path("%2e%2E") == ".."  # then refused by the path rules
    assert from_url_path("%252e") == "%2e"  # not decoded twice
    assert not is_valid_path(from_url_path("a/%2e%2e/b"))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/master.m3u8", "application/vnd.apple.mpegurl"),
        ("a/manifest.MPD", "application/dash+xml"),
        ("seg000.ts", "video/mp2t"),
        ("hi/seg001.m4s", "video/iso.segment"),
        ("init.mp4", "video/mp4"),
        ("a.m4a", "audio/mp4"),
        ("a.aac", "audio/aac"),
        ("subs.vtt", "text/vtt"),
        ("enc.key", "application/octet-stream"),
        ("a.webm", "video/webm"),
        ("a.mp3", "audio/mpeg"),
        ("a.json", "application/json"),
        ("page.html", "text/html"),
        ("noext", "application/octet-stream"),
        (".hidden", "application/octet-stream"),
        ("a.unknownext", "application/octet-stream"),
    ],
)
def test_content_types(path: str, expected: str) -> None:
    assert content_type_for(path) == expected


def test_playlists() -> None:
    assert is_playlist("a/b.m3u8") and is_playlist("x.MPD")
    assert not is_playlist("seg.ts") and not is_playlist("m3u8")
