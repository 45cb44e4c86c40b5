"""The ``fsnode`` command line against the local stack: every file command, resume, errors."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import requests

from fsnode.client import FsnodeClient
from fsnode.download import DownloadError, download_file
from fsnode.localstack.resources import LOCAL_CREDENTIALS
from fsnode.localstack.stack import StackInfo
from fsnode.settings import ClientSettings
from fsnode.uploads import UploadInterrupted
from tests.e2e.cli_helpers import MIB, cli, cli_error, random_file, sha
from tests.e2e.conftest import run_cli


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The in-process client's FSNODE_HOME is the CLI's, so they share resume state."""
    home = Path(os.environ["FSNODE_TEST_HOME"])
    monkeypatch.setenv("FSNODE_HOME", str(home))
    return home


@pytest.fixture
def client(stack: StackInfo, home: Path) -> FsnodeClient:
    settings = ClientSettings(api_url=stack.api, api_key=stack.api_key, ca_cert=stack.ca_cert)
    return FsnodeClient(settings, workers=1, edge_timeout=3)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-data")


@contextmanager
def empty_home(folder: Path) -> Iterator[None]:
    """Run the CLI with an FSNODE_HOME that knows no stack (run_cli reads this variable)."""
    saved = os.environ["FSNODE_TEST_HOME"]
    os.environ["FSNODE_TEST_HOME"] = str(folder)
    try:
        yield
    finally:
        os.environ["FSNODE_TEST_HOME"] = saved


def test_upload_ls_share_and_get_by_share_url(stack: StackInfo, data_dir: Path) -> None:
    original = random_file(data_dir, "movie.bin", 9 * MIB + 123)
    up = cli(stack, "upload", str(original), "--share", "--ttl", "600")
    assert up["name"] == "movie.bin" and up["size"] == original.stat().st_size
    assert up["parts_sent"] == 2 and up["parts_resumed"] == 0

    listed = {f["file_id"]: f for f in cli(stack, "ls")["files"]}
    assert listed[up["id"]]["name"] == "movie.bin"

    share = cli(stack, "share", up["id"], "--ttl", "300")
    assert share["share_url"].startswith(f"{stack.api}/s/{up['id']}?")

    out = data_dir / "via-share.bin"
    got = cli(stack, "get", share["share_url"], "-o", str(out))
    assert sha(out) == sha(original)
    assert got["size"] == original.stat().st_size
    edge_hosts = {e.url.removeprefix("https://") for e in stack.edges}
    assert set(got["sources"]) <= edge_hosts
    assert not list(data_dir.glob("via-share.bin.part*"))


def test_get_share_url_needs_no_api_key_only_the_ca(
    stack: StackInfo, data_dir: Path, tmp_path: Path
) -> None:
    original = random_file(data_dir, "small.txt", 1000)
    up = cli(stack, "upload", str(original), "--share")
    out = data_dir / "no-key.txt"
    with empty_home(tmp_path):
        # No stack, no api url or key: only the CA certificate.
        result = run_cli("get", up["share_url"], "-o", str(out), "--ca-cert", stack.ca_cert)
        untrusted = run_cli("get", up["share_url"], "-o", str(data_dir / "x"))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == original.read_bytes()
    assert "wrote" in result.stdout

    assert untrusted.returncode == 1  # the private CA is not trusted by default
    assert "certificate" in untrusted.stderr.lower() or "ssl" in untrusted.stderr.lower()


def test_interrupted_upload_resumes_the_missing_parts(
    stack: StackInfo, client: FsnodeClient, data_dir: Path
) -> None:
    original = random_file(data_dir, "resume.bin", 20 * MIB)  # three 8 MiB parts
    with pytest.raises(UploadInterrupted):
        client.upload(original, stop_after_parts=1)

    up = cli(stack, "upload", str(original), "--share")
    assert (up["parts_resumed"], up["parts_sent"]) == (1, 2)
    out = data_dir / "resume.out"
    cli(stack, "get", up["share_url"], "-o", str(out))
    assert sha(out) == sha(original)


def test_a_changed_file_does_not_resume_a_stale_upload(
    stack: StackInfo, client: FsnodeClient, data_dir: Path
) -> None:
    path = random_file(data_dir, "changes.bin", 17 * MIB)
    with pytest.raises(UploadInterrupted):
        client.upload(path, stop_after_parts=1)
    path.write_bytes(os.urandom(17 * MIB))  # same size, new bytes and mtime

    up = cli(stack, "upload", str(path), "--share")
    assert up["parts_resumed"] == 0
    out = data_dir / "changes.out"
    cli(stack, "get", up["share_url"], "-o", str(out))
    assert sha(out) == sha(path)


def test_errors_are_clear_and_exit_non_zero(stack: StackInfo, data_dir: Path) -> None:
    missing = cli_error(stack, "share", "0" * 32)
    assert missing["code"] == "not_found"
    bad_id = cli_error(stack, "share", "../etc/passwd")
    assert bad_id["code"] == "invalid_input"
    assert "s3://" in cli_error(stack, "import", "https://example.com/x")["message"]
    assert cli_error(stack, "upload", str(data_dir / "no-such-file"))["code"] == (
        "FileNotFoundError"
    )

    human = run_cli("share", "0" * 32, "--state-dir", stack.state_dir)
    assert human.returncode == 1
    assert human.stderr.startswith("fsnode: error: ") and "no such file" in human.stderr

    wrong_key = run_cli("ls", "--state-dir", stack.state_dir, "--api-key", "nope", "--json")
    assert wrong_key.returncode == 1
    assert json.loads(wrong_key.stderr)["error"]["code"] == "unauthorized"


def test_no_settings_anywhere_is_an_error(tmp_path: Path) -> None:
    with empty_home(tmp_path):
        result = run_cli("ls")
    assert result.returncode == 1
    assert "fsnode local up" in result.stderr


def test_nodes_lists_load_and_endpoints(stack: StackInfo) -> None:
    nodes = {n["node_id"]: n for n in cli(stack, "nodes")["nodes"]}
    assert {e.node_id for e in stack.edges} <= set(nodes)
    text = run_cli("nodes", "--state-dir", stack.state_dir)
    assert text.returncode == 0
    for edge in stack.edges:
        assert edge.node_id in text.stdout and edge.url in text.stdout
    assert "public names: none (no domain set)" in text.stdout


def test_cluster_shows_capacity(stack: StackInfo) -> None:
    view = cli(stack, "cluster")
    assert view["total_bytes"] >= view["used_bytes"] >= 0
    assert view["free_bytes"] <= view["total_bytes"]
    assert view["live_nodes"] >= len(stack.edges)
    assert {e.node_id for e in stack.edges} <= {n["node_id"] for n in view["nodes"]}
    text = run_cli("cluster", "--state-dir", stack.state_dir)
    assert text.returncode == 0
    assert "total" in text.stdout and stack.edges[0].node_id in text.stdout


@pytest.fixture(scope="module")
def planned(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("planned")
    original = random_file(folder, "planned.bin", 18 * MIB + 5)  # five chunks
    return {**cli(stack, "upload", str(original)), "local": original}


def test_plan_lists_each_chunk_with_its_replicas(stack: StackInfo, planned: dict[str, Any]) -> None:
    plan = cli(stack, "plan", planned["id"])
    chunks = plan["chunks"]
    assert [c["index"] for c in chunks] == list(range(5))
    assert sum(c["length"] for c in chunks) == planned["size"]
    node_ids = {e.node_id for e in stack.edges}
    for chunk in chunks:
        assert chunk["replicas"] and set(chunk["replicas"]) <= node_ids
        assert chunk["s3_fallback"] is True
    text = run_cli("plan", planned["id"], "--state-dir", stack.state_dir)
    assert text.returncode == 0 and "chunk" in text.stdout


def test_get_by_id_fetches_chunks_from_edges(
    stack: StackInfo, planned: dict[str, Any], data_dir: Path
) -> None:
    out = data_dir / "by-id.bin"
    got = cli(stack, "get", planned["id"], "-o", str(out))
    assert sha(out) == sha(planned["local"])
    assert got["chunks"] == got["fetched"] == 5
    assert set(got["sources"]) <= {e.node_id for e in stack.edges}


def test_interrupted_download_resumes(
    stack: StackInfo, client: FsnodeClient, planned: dict[str, Any], data_dir: Path
) -> None:
    out = data_dir / "resumed.bin"
    with pytest.raises(DownloadError):
        download_file(client, planned["id"], out, stop_after_chunks=2)
    assert (data_dir / "resumed.bin.part").exists() and not out.exists()

    got = cli(stack, "get", planned["id"], "-o", str(out))
    assert (got["resumed"], got["fetched"]) == (2, 3)
    assert sha(out) == sha(planned["local"])


@pytest.fixture(scope="module")
def imported_object(stack: StackInfo) -> Iterator[tuple[str, bytes]]:
    s3 = boto3.client(
        "s3", endpoint_url=stack.aws_endpoint, region_name=stack.region, **LOCAL_CREDENTIALS
    )
    body = os.urandom(5 * MIB + 7)
    key = "imports/already-there.bin"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=body, ContentType="application/x-test")
    yield key, body


@pytest.fixture(scope="module")
def imported(stack: StackInfo, imported_object: tuple[str, bytes]) -> dict[str, Any]:
    key = imported_object[0]
    return dict(
        cli(stack, "import", f"s3://{stack.bucket}/{key}", "--path", "imported/already-there.bin")
    )


def test_import_an_s3_object_then_get_it_by_id(
    stack: StackInfo, imported: dict[str, Any], imported_object: tuple[str, bytes], data_dir: Path
) -> None:
    body = imported_object[1]
    assert imported["size"] == len(body)
    assert imported["path"] == "imported/already-there.bin"
    assert imported["file_id"] in {f["file_id"] for f in cli(stack, "ls", "imported/")["files"]}
    out = data_dir / "imported-by-id.bin"
    got = cli(stack, "get", imported["file_id"], "-o", str(out))
    assert out.read_bytes() == body
    assert got["fetched"] == got["chunks"] == 2


def test_an_imported_file_streams_through_its_share_url(
    stack: StackInfo, imported: dict[str, Any], imported_object: tuple[str, bytes], data_dir: Path
) -> None:
    share = cli(stack, "share", imported["file_id"])
    out = data_dir / "imported-share.bin"
    cli(stack, "get", share["share_url"], "-o", str(out))
    assert out.read_bytes() == imported_object[1]


def test_rm_deletes_a_file(stack: StackInfo, data_dir: Path) -> None:
    original = random_file(data_dir, "doomed.bin", 2000)
    up = cli(stack, "upload", str(original))
    answer = cli(stack, "rm", up["id"])
    assert answer["file_id"] == up["id"] and answer["status"] == "deleting"
    assert cli_error(stack, "share", up["id"])["code"] in ("gone", "not_found")


def test_upload_and_expire_set_move_and_clear_an_expiry(stack: StackInfo, data_dir: Path) -> None:
    original = random_file(data_dir, "expiring.bin", 3000)
    before = int(time.time())
    up = cli(stack, "upload", str(original), "--expires-in", "3600", "--share", "--ttl", "86400")
    assert before + 3600 <= up["expires_at"] <= int(time.time()) + 3600
    # The share was cut to the file's expiry: a link never outlives its file.
    assert int(dict(parse_qsl(urlsplit(up["share_url"]).query))["exp"]) == up["expires_at"]

    at = int(time.time()) + 7200
    moved = cli(stack, "expire", up["id"], "--at", str(at))
    assert moved["expires_at"] == at and moved["file_id"] == up["id"]
    text = run_cli("expire", up["id"], "--in", "60", "--state-dir", stack.state_dir)
    assert text.returncode == 0 and "expires" in text.stdout and up["id"] in text.stdout
    assert cli(stack, "expire", up["id"], "--never")["expires_at"] is None
    human = run_cli("expire", up["id"], "--never", "--state-dir", stack.state_dir)
    assert "never expires" in human.stdout

    assert cli_error(stack, "expire", up["id"], "--at", "5")["code"] == "invalid_input"
    assert cli_error(stack, "expire", "0" * 32, "--in", "60")["code"] == "not_found"
    both = run_cli("expire", up["id"], "--in", "5", "--never", "--state-dir", stack.state_dir)
    assert both.returncode == 2 and "not allowed with" in both.stderr  # argparse refuses


def test_import_takes_an_expiry(stack: StackInfo, imported_object: tuple[str, bytes]) -> None:
    record = cli(
        stack, "import", f"s3://{stack.bucket}/{imported_object[0]}", "--expires-in", "86400"
    )
    assert record["expires_at"] >= int(time.time()) + 86400 - 60
    cli(stack, "expire", record["file_id"], "--never")  # other tests share this import


def test_share_policies_from_the_command_line(stack: StackInfo, data_dir: Path) -> None:
    original = random_file(data_dir, "policy.bin", 2000)
    record = cli(stack, "upload", str(original))
    file_id, name = record["id"], record["name"]
    later = int(time.time()) + 3600

    share = cli(
        stack, "share", file_id, "--ip", "127.0.0.1/32", "--not-before", str(later), "--ttl", "60"
    )
    query = dict(parse_qsl(urlsplit(share["share_url"]).query))
    assert (query["ip"], query["nbf"]) == ("127.0.0.1/32", str(later))
    assert "v" not in query  # a file share covers the file, whatever its version
    assert share["expires"] == later + 60
    # Not valid yet: the redirect refuses it.
    assert requests.get(share["share_url"], allow_redirects=False, timeout=30).status_code == 403

    error = cli_error(stack, "share", file_id, "--ip", "not-a-network")
    assert error["code"] == "invalid_input" and "CIDR" in error["message"]
    assert cli_error(stack, "share", file_id, "--prefix", "a/")["code"] == "SettingsError"
    assert name == original.name
