"""``/metrics`` lines for the S3-only data plane: published-object reads, early first
ranges and playlist prefetch (Prometheus text, appended to ``EdgeMetrics.render``)."""

from __future__ import annotations

from edge_node.early_reads import EarlyReads
from edge_node.prefetch import PlaylistPrefetch
from edge_node.published_reader import PublishedReader


def render(
    published: PublishedReader | None, early: EarlyReads | None, prefetch: PlaylistPrefetch | None
) -> str:
    table: list[tuple[str, str, str, int]] = []
    if published is not None:
        table += [
            ("head_reads_total", "counter", "File heads read from S3.", published.head_reads),
            (
                "manifest_reads_total",
                "counter",
                "Version manifests read from S3.",
                published.manifest_reads,
            ),
            (
                "tree_list_pages_total",
                "counter",
                "Tree-key listing pages read from S3.",
                published.list_pages,
            ),
        ]
    if early is not None:
        table += [
            (
                "early_reads_total",
                "counter",
                "First ranges read beside a cold manifest.",
                early.started,
            ),
            (
                "early_read_bytes_used_total",
                "counter",
                "Early bytes the cache's fills took.",
                early.used_bytes,
            ),
        ]
    if prefetch is not None:
        table += [
            (
                "prefetch_segments_total",
                "counter",
                "Playlist segments prefetched.",
                prefetch.segments_started,
            ),
            (
                "prefetch_bytes_total",
                "counter",
                "Segment bytes prefetch asked for.",
                prefetch.bytes_started,
            ),
            (
                "prefetch_skipped_total",
                "counter",
                "Playlists skipped: too many pending.",
                prefetch.skipped,
            ),
        ]
    lines = []
    for name, kind, help_text, value in table:
        full = f"fsnode_edge_{name}"
        lines += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}", f"{full} {value}"]
    return "\n".join(lines) + "\n" if lines else ""
