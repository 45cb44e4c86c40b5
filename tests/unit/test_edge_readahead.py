"""Sequential-read detection for read-ahead (edge_node.readahead.ReadAhead)."""

from __future__ import annotations

from dataclasses import replace

from edge_node.readahead import ReadAhead
from tests.unit.edge_cache_fakes import DATA, make_manifest

MANIFEST = replace(make_manifest(DATA), chunk_size=1000)


def test_a_request_starting_where_one_ended_is_sequential() -> None:
    ahead = ReadAhead()
    assert not ahead.observe(MANIFEST, 0, 499, open_ended=False)  # nothing seen yet
    assert ahead.observe(MANIFEST, 500, 999, open_ended=False)  # starts at the end
    assert ahead.observe(MANIFEST, 1000 - ReadAhead.OVERLAP, 1500, open_ended=False)
    assert ahead.observe(MANIFEST, 1501 + 1000, 3000, open_ended=False)  # up to a chunk past


def test_repeats_jumps_and_other_files_are_not_sequential() -> None:
    ahead = ReadAhead()
    ahead.observe(MANIFEST, 0, 2999, open_ended=False)
    assert not ahead.observe(MANIFEST, 0, 2999, open_ended=False)  # a repeat (far before)
    assert not ahead.observe(MANIFEST, 3000 + 1001, 3500, open_ended=False)  # past the slack
    other = replace(MANIFEST, file_id="f" * 32)
    assert not ahead.observe(other, 3000, 3100, open_ended=False)
    assert ahead.observe(other, 5, 10, open_ended=True)  # open-ended: always


def test_only_a_few_recent_ends_per_file_are_kept() -> None:
    ahead = ReadAhead(ends_per_file=2)
    for start in (0, 10_000, 20_000):
        ahead.observe(MANIFEST, start, start + 99, open_ended=False)
    assert not ahead.observe(MANIFEST, 100, 200, open_ended=False)  # that end was dropped
    assert ahead.observe(MANIFEST, 20_100, 20_200, open_ended=False)
