"""Chunk-file reads (edge_node.diskio): on the loop from the page cache, in a thread
when the disk is needed or the kernel cannot say."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_node import diskio

DATA = os.urandom(300_000)


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "chunk"
    path.write_bytes(DATA)
    handle = os.open(path, os.O_RDONLY)
    yield handle
    os.close(handle)


@pytest.fixture(autouse=True)
def _restore_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    # read_if_cached turns the flag off for good when the kernel refuses it.
    monkeypatch.setattr(diskio, "_NOWAIT", diskio._NOWAIT)


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="no RWF_NOWAIT on this platform")
def test_bytes_in_the_page_cache_are_read_on_the_loop(fd: int) -> None:
    os.pread(fd, len(DATA), 0)  # now cached
    got = diskio.read_if_cached(fd, 100_000, 12_345)
    assert got is not None and bytes(got) == DATA[12_345:112_345]
    assert diskio.read_if_cached(fd, 1000, len(DATA) - 10) is None  # short: a thread reads it


async def test_bytes_the_disk_must_supply_are_read_in_a_thread(
    fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def would_block(*_args: Any) -> int:
        raise BlockingIOError(errno.EAGAIN, "not cached")

    monkeypatch.setattr(diskio, "_NOWAIT", 8)
    monkeypatch.setattr(os, "preadv", would_block)
    assert diskio.read_if_cached(fd, 10, 0) is None
    assert bytes(await diskio.pread(fd, 200_000, 50_000)) == DATA[50_000:250_000]
    assert diskio._NOWAIT == 8  # a miss is no reason to stop trying


async def test_a_kernel_without_nowait_reads_are_all_threaded(
    fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def refused(*args: Any) -> int:
        calls.append(args)
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(diskio, "_NOWAIT", 8)
    monkeypatch.setattr(os, "preadv", refused)
    assert bytes(await diskio.pread(fd, 1000, 0)) == DATA[:1000]
    assert bytes(await diskio.pread(fd, 1000, 1000)) == DATA[1000:2000]
    assert len(calls) == 1  # refused once, never asked again
