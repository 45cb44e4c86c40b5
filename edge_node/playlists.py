"""The first media segments a playlist names, in the order a player asks for them: HLS
media playlists (``#EXT-X-MAP`` init segment, then the ``#EXTINF`` segments) and DASH
MPDs (``SegmentTemplate`` with ``$RepresentationID$``/``$Number$``, or ``SegmentURL``
lists; each representation's initialization first). A master playlist names no media
segment and yields nothing; ``variant_playlists`` gives an HLS master's variant
playlists, in the order written (a player starts with the first: Apple's HLS authoring
spec). References are returned as written (relative URLs); the caller resolves them.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ElementTree

_MAP_URI = re.compile(r'#EXT-X-MAP:.*?URI="([^"]+)"')
_NUMBER = re.compile(r"\$Number(?:%0(\d+)d)?\$")


def media_segments(path: str, text: str, limit: int) -> list[str]:
    """Up to ``limit`` segment references of the playlist at ``path`` (``.m3u8``/``.mpd``)."""
    if limit <= 0:
        return []
    if path.lower().endswith(".mpd"):
        return _dash_segments(text, limit)
    return _hls_segments(text, limit)


def _hls_segments(text: str, limit: int) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    if not lines or lines[0] != "#EXTM3U" or not any(x.startswith("#EXTINF") for x in lines):
        return []  # not a media playlist (a master names variant playlists)
    out: list[str] = []
    for line in lines:
        found = _MAP_URI.match(line)
        if found:
            out.append(found.group(1))
        elif line and not line.startswith("#"):
            out.append(line)
        if len(out) >= limit:
            break
    return out


def variant_playlists(path: str, text: str, limit: int) -> list[str]:
    """Up to ``limit`` variant playlist references of an HLS master playlist (the line
    after each ``#EXT-X-STREAM-INF``); none for anything else."""
    if limit <= 0 or not path.lower().endswith(".m3u8"):
        return []
    lines = [line.strip() for line in text.splitlines()]
    if not lines or lines[0] != "#EXTM3U":
        return []
    out: list[str] = []
    for at, line in enumerate(lines[:-1]):
        following = lines[at + 1]
        if line.startswith("#EXT-X-STREAM-INF") and following and not following.startswith("#"):
            out.append(following)
            if len(out) >= limit:
                break
    return out


def _dash_segments(text: str, limit: int) -> list[str]:
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return []
    out: list[str] = []
    for element in root.iter():
        if _local(element.tag) != "Representation":
            continue
        out.extend(_representation(element, root, limit - len(out)))
        if len(out) >= limit:
            break
    return out[:limit]


def _representation(rep: ElementTree.Element, root: ElementTree.Element, limit: int) -> list[str]:
    rep_id = rep.get("id", "")
    template = _child(rep, "SegmentTemplate")
    if template is None:
        template = _parent_template(rep, root)
    if template is not None:
        out = []
        init = template.get("initialization")
        if init:
            out.append(init.replace("$RepresentationID$", rep_id))
        media = template.get("media")
        number = int(template.get("startNumber") or "1")
        while media and len(out) < limit:
            name = media.replace("$RepresentationID$", rep_id)
            out.append(_NUMBER.sub(functools.partial(_numbered, number), name))
            number += 1
        return out[:limit]
    listing = _child(rep, "SegmentList")
    if listing is None:
        return []
    out = []
    init_element = _child(listing, "Initialization")
    if init_element is not None and init_element.get("sourceURL"):
        out.append(str(init_element.get("sourceURL")))
    for segment in listing:
        if _local(segment.tag) == "SegmentURL" and segment.get("media"):
            out.append(str(segment.get("media")))
    return out[:limit]


def _numbered(number: int, match: re.Match[str]) -> str:
    """``$Number$`` or ``$Number%05d$`` filled in."""
    return f"{number:0{int(match.group(1) or 0)}d}"


def _parent_template(
    rep: ElementTree.Element, root: ElementTree.Element
) -> ElementTree.Element | None:
    """A SegmentTemplate on the representation's AdaptationSet (ffmpeg puts it there)."""
    for adaptation in root.iter():
        if _local(adaptation.tag) == "AdaptationSet" and rep in list(adaptation):
            return _child(adaptation, "SegmentTemplate")
    return None


def _child(element: ElementTree.Element, name: str) -> ElementTree.Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]
