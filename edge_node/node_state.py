"""What the node agent (``edge_node.main``) tells its workers: the node id, the bucket
and chunk size (the S3 data plane's), the share keys, manifests to forget, the public
certificate in force. One JSON file in the state folder, replaced atomically,
then SIGHUP to every worker, which re-reads it and the certificate files
(``edge_node.worker``). The same signal carries a renewed certificate (private or
public): the worker loads it into its live SSLContext, so open connections and their
streams go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_node.tls import write_private

STATE_FILE = "node.json"
# Manifests to forget, kept for workers that were busy when told (the newest N).
FORGOTTEN_KEPT = 1024


@dataclass(slots=True)
class NodeState:
    node_id: str | None = None
    # Where the published objects and the data are, and the fleet's chunk size.
    bucket: str = ""
    chunk_size: int = 0
    share_public_keys: dict[str, str] = field(default_factory=dict)
    # (sequence, file_id): a worker forgets every file past the sequence it has seen.
    forgotten: list[tuple[int, str]] = field(default_factory=list)
    # Bumped when every cached manifest must be checked again (a new node identity).
    distrusted: int = 0
    # The public certificate's name (``*.edges.DOMAIN``) and serial, once the agent
    # stored it (``edge_node.public_tls``'s files).
    public_name: str | None = None
    public_serial: str | None = None

    @property
    def last_forgotten(self) -> int:
        return self.forgotten[-1][0] if self.forgotten else 0

    def forget(self, file_id: str) -> None:
        self.forgotten.append((self.last_forgotten + 1, file_id))
        del self.forgotten[:-FORGOTTEN_KEPT]

    def save(self, state_dir: Path) -> None:
        body = {
            "node_id": self.node_id,
            "bucket": self.bucket,
            "chunk_size": self.chunk_size,
            "share_public_keys": self.share_public_keys,
            "forgotten": self.forgotten,
            "distrusted": self.distrusted,
            "public_name": self.public_name,
            "public_serial": self.public_serial,
        }
        write_private(state_dir / STATE_FILE, json.dumps(body).encode())

    @classmethod
    def load(cls, state_dir: Path) -> NodeState:
        raw: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
        return cls(
            node_id=raw.get("node_id"),
            bucket=str(raw.get("bucket") or ""),
            chunk_size=int(raw.get("chunk_size") or 0),
            share_public_keys={str(k): str(v) for k, v in raw["share_public_keys"].items()},
            forgotten=[(int(seq), str(fid)) for seq, fid in raw["forgotten"]],
            distrusted=int(raw["distrusted"]),
            public_name=raw.get("public_name"),
            public_serial=raw.get("public_serial"),
        )
