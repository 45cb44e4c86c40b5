"""What a file answer says about its body: its type and how long a client may keep it
(docs/PROTOCOL.md, "Edge").

- ``Content-Type``: the streaming types by extension (``fsnode_core.content_types``:
  ``.m3u8``, ``.mpd``, ``.ts``, ``.m4s``, ``.mp4``, ``.vtt``, ``.aac``, ``.key``...), since
  players check them whatever an uploader or an imported object said; any other file
  keeps the type it was published with.
- ``Cache-Control`` is always ``private`` (a share URL is a bearer credential) and never
  lasts past the share's expiry: playlists ``max-age=2`` (live packagers rewrite them);
  a file share without a version pin ``no-cache`` (a new version may replace the bytes,
  so the client revalidates with the ETag); pinned file shares and files of a folder
  share (segments: written once) until the share expires, at most a week.
"""

from __future__ import annotations

import time

from fsnode_core.content_types import BY_EXTENSION, content_type_for, extension_of, is_playlist

# Share URLs are bearer URLs (no cookies), so any origin may read them.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Range, Content-Length, Accept-Ranges, ETag",
}
# A signed URL is never cached longer than this, even if it lives longer.
MAX_CACHE_SECONDS = 7 * 24 * 3600
PLAYLIST_SECONDS = 2


def content_type(path: str, published: str) -> str:
    """The type a file at ``path`` published as ``published`` is served with."""
    if extension_of(path) in BY_EXTENSION:
        return content_type_for(path)
    return published


def cache_control(path: str, expires: int, *, revalidate: bool) -> str:
    """``Cache-Control`` for a file answer under a share expiring at ``expires``;
    ``revalidate``: the URL names no version (an unpinned file share)."""
    remaining = max(0, min(MAX_CACHE_SECONDS, expires - int(time.time())))
    if is_playlist(path):
        return f"private, max-age={min(PLAYLIST_SECONDS, remaining)}"
    if revalidate:
        return "private, no-cache"
    return f"private, max-age={remaining}"
