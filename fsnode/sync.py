"""``sync DIR``: upload new and changed files by content hash, optionally delete gone ones.

What was uploaded from a folder is kept in a manifest under ``FSNODE_HOME/sync``
(keyed by the control plane and the folder): relative name -> ``{file_id, sha256}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fsnode import state

if TYPE_CHECKING:
    from fsnode.client import FsnodeClient


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


def sync_dir(
    client: FsnodeClient,
    directory: Path,
    *,
    delete: bool = False,
    on_file: Callable[[str, str], None] | None = None,
) -> SyncReport:
    """Bring the control plane in line with ``directory``; ``on_file(action, name)`` reports."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is not a directory")
    # Keyed by control plane too: what was synced to one stack says nothing of another.
    manifest_path = state.state_path("sync", f"{client.settings.api_url} {directory}")
    manifest: dict[str, dict[str, str]] = (state.load(manifest_path) or {}).get("files", {})
    report = SyncReport()
    present: set[str] = set()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()):
        name = path.relative_to(directory).as_posix()
        if name.endswith((".part", ".part.json")):
            continue  # an unfinished download, not content
        present.add(name)
        digest = state.file_sha256(path)
        known = manifest.get(name)
        if known is not None and known["sha256"] == digest:
            report.unchanged.append(name)
            continue
        record = _upload(client, path, known["file_id"] if known else None)
        if known is not None and record["file_id"] != known["file_id"]:
            # The control plane made a new file rather than a version: drop the old one.
            _delete_quietly(client, known["file_id"])
        entry = {"name": name, "file_id": str(record["file_id"])}
        (report.updated if known else report.uploaded).append(entry)
        manifest[name] = {"file_id": entry["file_id"], "sha256": digest}
        state.save(manifest_path, {"directory": str(directory), "files": manifest})
        if on_file is not None:
            on_file("updated" if known else "uploaded", name)
    if delete:
        for name in sorted(set(manifest) - present):
            file_id = manifest.pop(name)["file_id"]
            _delete_quietly(client, file_id)
            report.deleted.append({"name": name, "file_id": file_id})
            state.save(manifest_path, {"directory": str(directory), "files": manifest})
            if on_file is not None:
                on_file("deleted", name)
    return report


def _upload(client: FsnodeClient, path: Path, file_id: str | None) -> dict[str, Any]:
    from fsnode.client import ApiError

    try:
        return client.upload(path, file_id=file_id)
    except ApiError as exc:
        if file_id is None or exc.status not in (404, 410):
            raise
    return client.upload(path)  # deleted on the server meanwhile: upload it as new


def _delete_quietly(client: FsnodeClient, file_id: str) -> None:
    from fsnode.client import ApiError

    try:
        client.delete(file_id)
    except ApiError as exc:
        if exc.status not in (404, 410):  # already gone is what we wanted
            raise
