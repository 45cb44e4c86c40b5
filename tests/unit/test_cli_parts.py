"""Pieces of the command line and client that need no server: parsing, resume rules, state."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from fsnode_core.chunks import part_layout, part_size_for

from fsnode import cli, state
from fsnode.api import ApiError
from fsnode.commands import nodes, support
from fsnode.hashing import file_hashes
from fsnode.localstack.errors import StackError
from fsnode.uploads import _resumable

COMMANDS = [
    ["upload", "x"], ["get", "x"], ["sync", "x"], ["import", "s3://b/k"], ["share", "x"],
    ["ls"], ["rm", "x"], ["nodes"], ["cluster"], ["plan", "x"], ["expire", "x", "--never"],
    ["local", "up"], ["local", "down"], ["local", "status"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_takes_json_and_settings_flags(command: list[str]) -> None:
    args = cli._parser().parse_args(
        [*command, "--json", "--api-url", "http://h", "--api-key", "k", "--ca-cert", "c"]
    )
    assert args.json and args.api_url == "http://h" and args.ca_cert == "c"


def fingerprint() -> dict[str, object]:
    return {"size": 10, "mtime_ns": 5, "hashes": "a" * 64}


def test_an_upload_resumes_only_for_the_same_bytes_and_target_within_a_day() -> None:
    target = {"path": "a/b.bin"}
    saved = {**fingerprint(), "upload": {}, "target": target, "started": time.time()}
    assert _resumable(saved, fingerprint(), target)
    assert not _resumable(None, fingerprint(), target)
    assert not _resumable(saved, {**fingerprint(), "mtime_ns": 6}, target)
    assert not _resumable(saved, {**fingerprint(), "hashes": "b" * 64}, target)
    assert not _resumable(saved, fingerprint(), {"path": "other"})  # another file's path
    assert not _resumable(saved, fingerprint(), {"file_id": "ab" * 16})
    # Part URLs are asked for afresh on resume: an hour-old upload still resumes.
    assert _resumable({**saved, "started": time.time() - 3600}, fingerprint(), target)
    stale = {**saved, "started": time.time() - 25 * 3600}
    assert not _resumable(stale, fingerprint(), target)  # S3 may have aborted it by now
    old_format = {**fingerprint(), "init": {}, "for_file_id": None, "started": time.time()}
    assert not _resumable(old_format, fingerprint(), target)


def test_the_client_grows_parts_as_the_control_plane_does() -> None:
    from fsnode.client import FsnodeClient
    from fsnode.settings import ClientSettings

    client = FsnodeClient(ClientSettings(api_url="http://unused", api_key="k", ca_cert=None))
    client._chunk_size = 4 * 2**20  # what /web/config.json says
    for size in (0, 1, 10**9, 78 * 2**30, 79 * 2**30, 100 * 2**30, 5 * 2**40):
        assert client.part_size_for(size) == part_size_for(4 * 2**20, size), size


CHUNK = 1024  # small sizes, the control plane's arithmetic: parts of whole chunks
PART = part_size_for(CHUNK)


@pytest.mark.parametrize("size", [0, 1, CHUNK, PART - 1, PART, PART + 1, 3 * PART - CHUNK + 7])
def test_file_hashes_match_the_control_planes_chunk_and_part_layout(
    tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    chunks, parts = file_hashes(path, CHUNK, PART)
    assert chunks == [
        hashlib.sha256(data[i : i + CHUNK]).hexdigest() for i in range(0, size, CHUNK)
    ]
    assert parts == [
        hashlib.sha256(data[s.offset : s.offset + s.length]).hexdigest()
        for s in part_layout(size, CHUNK)
    ]


def test_file_hashes_refuse_parts_that_are_not_whole_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(ValueError):
        file_hashes(path, CHUNK, CHUNK + 1)


def test_state_files_round_trip_and_tolerate_garbage(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "s.json"
    state.save(path, {"a": [1, 2]})
    assert state.load(path) == {"a": [1, 2]}
    assert not list(path.parent.glob("*.tmp"))
    path.write_text("{half")
    assert state.load(path) is None
    path.write_text("[1]")
    assert state.load(path) is None
    state.remove(path)
    state.remove(path)  # removing twice is fine
    assert state.load(path) is None


def test_state_paths_are_keyed_under_fsnode_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FSNODE_HOME", str(tmp_path))
    one = state.state_path("uploads", "/a/b")
    assert one.parent == tmp_path / "uploads"
    assert one == state.state_path("uploads", "/a/b") != state.state_path("uploads", "/a/c")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("movie.mp4", "movie.mp4"), ("../../etc/passwd", "passwd"), ("a\\..\\b", "b"),
     ("..", None), ("", None), (None, None)],
)  # fmt: skip
def test_download_names_never_escape_the_folder(name: object, expected: str | None) -> None:
    assert support.safe_name(name) == expected


def test_sizes_read_well() -> None:
    assert support.size_text(None) == "?"
    assert support.size_text(512) == "512 B"
    assert support.size_text(3 * 1024**3) == "3.0 GiB"


def test_import_needs_an_s3_address(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["import", "http://b/k", "--api-url", "http://127.0.0.1:9", "--json"])
    assert code == 1
    assert "s3://BUCKET/KEY" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (StackError("no process 'edge-9' in this stack"), "StackError"),
        (FileNotFoundError(2, "No such file or directory", "movie.mp4"), "FileNotFoundError"),
        (ApiError(404, "not_found", "no such file"), "not_found"),
    ],
)
def test_what_a_user_can_fix_is_one_clean_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    raised: Exception,
    code: str,
) -> None:
    def failing(args: Any) -> int:
        raise raised

    monkeypatch.setattr(nodes, "cmd_nodes", failing)
    assert cli.main(["nodes", "--json", "--api-url", "http://127.0.0.1:9"]) == 1
    assert json.loads(capsys.readouterr().err)["error"]["code"] == code


@pytest.mark.parametrize("bug", [RuntimeError("a bug"), OSError("bad descriptor"), KeyError("x")])
def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, bug: Exception) -> None:
    def failing(args: Any) -> int:
        raise bug

    monkeypatch.setattr(nodes, "cmd_nodes", failing)
    with pytest.raises(type(bug)):
        cli.main(["nodes", "--api-url", "http://127.0.0.1:9"])
