"""The upload page's hashing (``fileHashes`` in app.js) run in Node against Python's.

The page must declare the same chunk and part SHA-256s as the control plane lays the
file out (``fsnode_core.chunks``), or S3 refuses its parts. Node's ``Blob`` and
``crypto.subtle`` are the browser's APIs; the functions are taken from app.js as is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fsnode_core.chunks import part_layout, part_size_for

APP_JS = Path(__file__).resolve().parents[2] / "functions" / "chalicelib" / "web" / "app.js"
NODE = shutil.which("node")
CHUNK = 1024
PART = part_size_for(CHUNK)

pytestmark = pytest.mark.skipif(NODE is None, reason="needs node")


def _function(source: str, name: str) -> str:
    """One top-level function of app.js, from its ``function`` line to its closing brace."""
    match = re.search(rf"^(async )?function {name}\(.*?^}}$", source, re.MULTILINE | re.DOTALL)
    assert match, name
    return match.group(0)


def test_the_page_hashes_chunks_and_parts_as_the_control_plane_lays_them_out(
    tmp_path: Path,
) -> None:
    source = APP_JS.read_text()
    sizes = [0, 1, CHUNK, PART - 1, PART, PART + 1, 3 * PART - CHUNK + 7]
    data = os.urandom(max(sizes))
    (tmp_path / "data.bin").write_bytes(data)
    script = "\n".join([
        _function(source, "hex"),
        _function(source, "fileHashes"),
        "const fs = require('fs');",
        f"const bytes = fs.readFileSync({json.dumps(str(tmp_path / 'data.bin'))});",
        "(async () => {",
        "  const out = [];",
        f"  for (const size of {json.dumps(sizes)}) {{",
        "    const file = new Blob([bytes.subarray(0, size)]);",
        f"    out.push(await fileHashes(file, {CHUNK}, {PART}, () => {{}}));",
        "  }",
        "  console.log(JSON.stringify(out));",
        "})();",
    ])
    assert NODE is not None
    answer = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=60,
                            check=True)
    for size, got in zip(sizes, json.loads(answer.stdout), strict=True):
        body = data[:size]
        assert got["chunks"] == [hashlib.sha256(body[i:i + CHUNK]).hexdigest()
                                 for i in range(0, size, CHUNK)], size
        assert got["parts"] == [hashlib.sha256(body[s.offset:s.offset + s.length]).hexdigest()
                                for s in part_layout(size, CHUNK)], size
