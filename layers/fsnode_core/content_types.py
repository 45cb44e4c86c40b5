"""Content types by file extension: the one table the control plane (uploads and
imports that name none), the CLI and the edge use.

Streaming types come first (HLS and DASH players check them), then Python's built-in
table (``mimetypes`` without the machine's ``/etc/mime.types``, so every machine
answers the same), then ``application/octet-stream``.
"""

from __future__ import annotations

import mimetypes

DEFAULT_CONTENT_TYPE = "application/octet-stream"

BY_EXTENSION: dict[str, str] = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".vtt": "text/vtt",
    ".key": "application/octet-stream",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
    ".json": "application/json",
}

# Playlists: small, rewritten by live packagers, read first by a player. They get a
# short cache lifetime, and the control plane answers them inline when no edge can.
PLAYLIST_EXTENSIONS = frozenset({".m3u8", ".mpd"})

_BUILT_IN = mimetypes.MimeTypes()


def extension_of(path: str) -> str:
    """The last segment's extension, lowercased (``""`` when it has none)."""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def content_type_for(path: str) -> str:
    """The content type a file at ``path`` is served with when its uploader gave none."""
    extension = extension_of(path)
    known = BY_EXTENSION.get(extension)
    if known is not None:
        return known
    guessed, _ = _BUILT_IN.guess_type("x" + extension, strict=False) if extension else (None, None)
    return guessed or DEFAULT_CONTENT_TYPE


def is_playlist(path: str) -> bool:
    """Whether ``path`` is an HLS or DASH playlist (``.m3u8``, ``.mpd``)."""
    return extension_of(path) in PLAYLIST_EXTENSIONS
