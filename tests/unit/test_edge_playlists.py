"""Which segments a playlist names first (edge_node.playlists), where a reference leads
inside a folder share (edge_node.prefetch.resolve), and the answer headers by kind
(edge_node.response_headers)."""

from __future__ import annotations

import time

import pytest
from fsnode_core.folder_tokens import FolderPolicy

from edge_node.playlists import media_segments, variant_playlists
from edge_node.prefetch import resolve
from edge_node.response_headers import cache_control, content_type

HLS = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-MAP:URI="init_0.mp4"
#EXTINF:4.000,
seg_0_000.m4s
#EXTINF:4.000,
seg_0_001.m4s
#EXTINF:2.5,
seg_0_002.m4s
#EXT-X-ENDLIST
"""
MASTER = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nv0/index.m3u8\nv1/index.m3u8\n"
# As ffmpeg's dash muxer writes it: the template on the AdaptationSet.
DASH = """<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static">
 <Period id="0">
  <AdaptationSet id="0" contentType="video">
   <SegmentTemplate timescale="1000" initialization="init-stream$RepresentationID$.m4s"
     media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>
   <Representation id="0" bandwidth="800000"/>
   <Representation id="1" bandwidth="400000"/>
  </AdaptationSet>
 </Period>
</MPD>"""
LISTED = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period><AdaptationSet>
<Representation id="a"><SegmentList><Initialization sourceURL="a/init.mp4"/>
<SegmentURL media="a/1.m4s"/><SegmentURL media="a/2.m4s"/></SegmentList></Representation>
</AdaptationSet></Period></MPD>"""


def test_hls_media_playlists_name_the_init_segment_then_the_segments() -> None:
    assert media_segments("v/index.m3u8", HLS, 3) == [
        "init_0.mp4",
        "seg_0_000.m4s",
        "seg_0_001.m4s",
    ]
    assert media_segments("v/index.m3u8", HLS, 10)[-1] == "seg_0_002.m4s"
    assert media_segments("v/index.m3u8", HLS, 0) == []


@pytest.mark.parametrize("text", [MASTER, "", "not a playlist\nseg.ts\n", "#EXTM3U\n"])
def test_master_and_other_texts_name_no_segment(text: str) -> None:
    assert media_segments("master.m3u8", text, 5) == []


def test_an_hls_master_names_its_variant_playlists_in_order() -> None:
    master = (
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2000000\nhi/index.m3u8\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",URI="audio.m3u8"\n'
        "#EXT-X-STREAM-INF:BANDWIDTH=800000\nlo/index.m3u8\n"
    )
    assert variant_playlists("master.m3u8", master, 5) == ["hi/index.m3u8", "lo/index.m3u8"]
    assert variant_playlists("master.m3u8", master, 1) == ["hi/index.m3u8"]
    # A media playlist, a DASH manifest, a text that is no playlist: none.
    for path, text in (("v.m3u8", HLS), ("m.mpd", DASH), ("x.m3u8", "seg.ts\n")):
        assert variant_playlists(path, text, 5) == []


def test_dash_templates_and_lists() -> None:
    assert media_segments("s/manifest.mpd", DASH, 4) == [
        "init-stream0.m4s",
        "chunk-stream0-00001.m4s",
        "chunk-stream0-00002.m4s",
        "chunk-stream0-00003.m4s",
    ]
    assert media_segments("s/manifest.mpd", LISTED, 5) == ["a/init.mp4", "a/1.m4s", "a/2.m4s"]
    assert media_segments("s/manifest.mpd", "<MPD", 5) == []  # malformed


POLICY = FolderPolicy(prefix="shows/trailer/", expires=2**40, kid="k")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("seg0.ts", "shows/trailer/hi/seg0.ts"),
        ("../lo/seg0.ts", "shows/trailer/lo/seg0.ts"),
        ("sub%20dir/a%2Bb.ts", "shows/trailer/hi/sub dir/a+b.ts"),
        ("../../trailer2/seg.ts", None),  # outside the folder
        ("../../../etc/passwd", None),
        ("https://elsewhere.example/seg.ts", None),
        ("//elsewhere.example/seg.ts", None),
        ("seg.ts?token=1", None),
        ("a%2Fb.ts", None),  # an encoded slash
        ("../", None),  # the folder itself
    ],
)
def test_references_resolve_inside_the_folder_only(reference: str, expected: str | None) -> None:
    assert resolve(POLICY, "shows/trailer/hi/index.m3u8", reference) == expected


def test_types_and_cache_lifetimes_by_kind() -> None:
    assert content_type("a/x.m3u8", "text/plain") == "application/vnd.apple.mpegurl"
    assert content_type("a/x.ts", "application/octet-stream") == "video/mp2t"
    assert content_type("a/x.m4s", "binary/octet-stream") == "video/iso.segment"
    assert content_type("a/x.mpd", "text/xml") == "application/dash+xml"
    assert content_type("a/x.bin", "image/png") == "image/png"  # not a streaming type
    soon = int(time.time()) + 100
    assert cache_control("a/x.m3u8", soon, revalidate=False) == "private, max-age=2"
    assert cache_control("a/x.mpd", soon, revalidate=True) == "private, max-age=2"
    assert cache_control("a/x.ts", soon, revalidate=True) == "private, no-cache"
    long = int(cache_control("a/x.ts", soon, revalidate=False).rpartition("=")[2])
    assert 95 <= long <= 100  # never past the share's expiry
    assert (
        cache_control("a/x.ts", int(time.time()) + 10**9, revalidate=False)
        == "private, max-age=604800"
    )
    assert cache_control("a/x.m3u8", int(time.time()) + 1, revalidate=False) in (
        "private, max-age=1",
        "private, max-age=0",
    )
