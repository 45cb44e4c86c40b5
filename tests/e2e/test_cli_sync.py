"""``fsnode sync DIR [--prefix P] [--delete]``, ``ls`` and ``upload --path``: files are
named by path, and sync compares against the control plane's listing (so a second
machine, with no local state, sees what the first uploaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fsnode.localstack.stack import StackInfo
from tests.e2e.cli_helpers import cli, cli_error
from tests.e2e.conftest import cli_env, run_cli


def test_sync_uploads_new_and_changed_files_and_skips_unchanged(
    stack: StackInfo, tmp_path: Path
) -> None:
    prefix = f"site-{os.urandom(4).hex()}/"
    folder = tmp_path / "site"
    (folder / "videos").mkdir(parents=True)
    (folder / "index.html").write_text("<h1>hello</h1>")
    (folder / "videos" / "a.bin").write_bytes(os.urandom(300_000))

    first = cli(stack, "sync", str(folder), "--prefix", prefix)
    assert sorted(e["name"] for e in first["uploaded"]) == ["index.html", "videos/a.bin"]
    assert sorted(e["path"] for e in first["uploaded"]) == [
        f"{prefix}index.html",
        f"{prefix}videos/a.bin",
    ]
    assert first["unchanged"] == [] and first["deleted"] == []
    ids = {e["name"]: e["file_id"] for e in first["uploaded"]}
    listed = cli(stack, "ls", prefix)["files"]
    assert [f["path"] for f in listed] == [f"{prefix}index.html", f"{prefix}videos/a.bin"]
    assert listed[0]["content_type"] == "text/html" and listed[0]["name"] == "index.html"
    assert [f["path"] for f in cli(stack, "ls", f"{prefix}videos/")["files"]] == [
        f"{prefix}videos/a.bin"
    ]

    again = cli(stack, "sync", str(folder), "--prefix", prefix)
    assert again["uploaded"] == [] and again["updated"] == []
    assert sorted(again["unchanged"]) == ["index.html", "videos/a.bin"]

    # A second machine: no local state at all (another FSNODE_HOME), the same answer.
    other_home = tmp_path / "other-home"
    other_home.mkdir()
    env = {**cli_env(), "FSNODE_HOME": str(other_home)}
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsnode.cli",
            "sync",
            str(folder),
            "--prefix",
            prefix.rstrip("/"),
            "--json",
            "--state-dir",
            stack.state_dir,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert second.returncode == 0, second.stderr
    assert sorted(json.loads(second.stdout)["unchanged"]) == ["index.html", "videos/a.bin"]

    # Same mtime and size but new bytes still counts as changed: the content decides.
    stat = (folder / "index.html").stat()
    (folder / "index.html").write_text("<h1>HELLO</h1>")
    os.utime(folder / "index.html", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (folder / "new.txt").write_text("new")
    third = cli(stack, "sync", str(folder), "--prefix", prefix)
    assert [e["name"] for e in third["updated"]] == ["index.html"]
    assert third["updated"][0]["file_id"] == ids["index.html"]  # a new version, same file
    assert [e["name"] for e in third["uploaded"]] == ["new.txt"]
    assert third["unchanged"] == ["videos/a.bin"]

    (folder / "new.txt").unlink()
    text = run_cli(
        "sync", str(folder), "--prefix", prefix, "--delete", "--state-dir", stack.state_dir
    )
    assert text.returncode == 0, text.stderr
    assert "deleted   new.txt" in text.stdout
    assert "0 uploaded, 0 updated, 2 unchanged, 1 deleted" in text.stdout
    assert f"{prefix}new.txt" not in [f["path"] for f in cli(stack, "ls", prefix)["files"]]

    missing = run_cli("sync", str(tmp_path / "nope"), "--json", "--state-dir", stack.state_dir)
    assert missing.returncode == 1
    assert "not a directory" in json.loads(missing.stderr)["error"]["message"]
    assert cli_error(stack, "sync", str(folder), "--prefix", "../x")["code"] == "invalid_input"


def test_upload_to_a_path_and_again_makes_a_version(stack: StackInfo, tmp_path: Path) -> None:
    path = f"clips/{os.urandom(4).hex()}/intro.mp4"
    local = tmp_path / "whatever.bin"
    local.write_bytes(os.urandom(1000))
    first = cli(stack, "upload", str(local), "--path", path)
    assert (first["path"], first["name"]) == (path, "intro.mp4")
    local.write_bytes(os.urandom(2000))
    second = cli(stack, "upload", str(local), "--path", path)
    assert second["id"] == first["id"] and second["version"] != first["version"]
    assert second["size"] == 2000
    listed = cli(stack, "ls", path)["files"]
    assert [(f["file_id"], f["size"], f["content_type"]) for f in listed] == [
        (first["id"], 2000, "video/mp4")
    ]
    both = run_cli(
        "upload", str(local), str(local), "--path", "x", "--json", "--state-dir", stack.state_dir
    )
    assert both.returncode == 1 and "--path names one file" in both.stderr
    assert cli_error(stack, "upload", str(local), "--path", "a//b")["code"] == "invalid_input"
