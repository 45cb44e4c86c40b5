"""``sync DIR [--prefix P] [--delete]``: make the files under ``P`` match ``DIR``.

Like ``aws s3 sync``, it compares against the control plane's listing under ``P`` (so a
sync from a second machine sees what the first uploaded), but by content: a file is
unchanged when its size and ``chunks_sha256`` (SHA-256 over its chunk digests) match
the listed record. Each file is named ``P`` + its path relative to ``DIR``; uploading to
a listed path makes a new version of that file (same id, shares keep working).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsnode_core.paths import folder_problem, path_problem

from fsnode.api import ApiError
from fsnode.client import FsnodeClient
from fsnode.hashing import content_digest


@dataclass(slots=True)
class SyncReport:
    uploaded: list[dict[str, str]] = field(default_factory=list)
    updated: list[dict[str, str]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "uploaded": self.uploaded,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
        }


def folder_prefix(prefix: str) -> str:
    """``--prefix`` as a folder: ``trailer`` and ``trailer/`` both name ``trailer/``."""
    folder = prefix if prefix == "" or prefix.endswith("/") else prefix + "/"
    problem = folder_problem(folder)
    if problem is not None:
        raise ApiError(400, "invalid_input", f"--prefix is not a folder: {problem}")
    return folder


def sync_dir(
    client: FsnodeClient,
    directory: Path,
    *,
    prefix: str = "",
    delete: bool = False,
    on_file: Callable[[str, str], None] | None = None,
) -> SyncReport:
    """Bring the files under ``prefix`` in line with ``directory``; ``on_file(action,
    name)`` reports each change (``name`` relative to ``directory``)."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a directory")
    folder = folder_prefix(prefix)
    listed = {record["path"]: record for record in client.list_files(folder)}
    report = SyncReport()
    present: set[str] = set()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()):
        name = path.relative_to(directory).as_posix()
        if name.endswith((".part", ".part.json")):
            continue  # an unfinished download, not content
        remote = folder + name
        problem = path_problem(remote)
        if problem is not None:
            raise ApiError(400, "invalid_input", f"{name!r} cannot be a file's path: {problem}")
        present.add(remote)
        known = listed.get(remote)
        if (
            known is not None
            and known.get("size") == path.stat().st_size
            and known.get("chunks_sha256") == content_digest(path, int(known["chunk_size"]))
        ):
            report.unchanged.append(name)
            continue
        record = client.upload(path, remote_path=remote)
        entry = {"name": name, "path": remote, "file_id": str(record["file_id"])}
        (report.updated if known else report.uploaded).append(entry)
        if on_file is not None:
            on_file("updated" if known else "uploaded", name)
    if delete:
        for remote in sorted(set(listed) - present):
            file_id = str(listed[remote]["file_id"])
            _delete_quietly(client, file_id)
            name = remote[len(folder) :]
            report.deleted.append({"name": name, "path": remote, "file_id": file_id})
            if on_file is not None:
                on_file("deleted", name)
    return report


def _delete_quietly(client: FsnodeClient, file_id: str) -> None:
    try:
        client.delete(file_id)
    except ApiError as exc:
        if exc.status not in (404, 410):  # already gone is what we wanted
            raise
