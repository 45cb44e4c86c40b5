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
    script = "\n".join(
        [
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
        ]
    )
    assert NODE is not None
    answer = subprocess.run(
        [NODE, "-e", script], capture_output=True, text=True, timeout=60, check=True
    )
    for size, got in zip(sizes, json.loads(answer.stdout), strict=True):
        body = data[:size]
        assert got["chunks"] == [
            hashlib.sha256(body[i : i + CHUNK]).hexdigest() for i in range(0, size, CHUNK)
        ], size
        assert got["parts"] == [
            hashlib.sha256(body[s.offset : s.offset + s.length]).hexdigest()
            for s in part_layout(size, CHUNK)
        ], size


def test_the_page_grows_parts_as_the_control_plane_does() -> None:
    source = APP_JS.read_text()
    chunk = 4 * 2**20
    sizes = [0, 1, 78 * 2**30, 79 * 2**30, 100 * 2**30, 5 * 2**40]
    script = "\n".join(
        [
            re.search(r"^const S3_MAX_PARTS = .*;$", source, re.MULTILINE).group(0),  # type: ignore[union-attr]
            _function(source, "partSizeFor"),
            f"console.log(JSON.stringify({json.dumps(sizes)}.map("
            f"(s) => partSizeFor(s, {chunk}, {part_size_for(chunk)}))));",
        ]
    )
    assert NODE is not None
    answer = subprocess.run(
        [NODE, "-e", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(answer.stdout) == [part_size_for(chunk, s) for s in sizes]


def test_the_page_fetches_each_page_of_part_urls_once() -> None:
    """Three workers reach unlisted parts together: one request per page, in order."""
    source = APP_JS.read_text()
    script = "\n".join(
        [
            _function(source, "partLister"),
            "const part = (n) => ({ part_number: n, url: `u${n}` });",
            "const init = { upload_id: 'U', parts: [part(1), part(2)], next_part: 3 };",
            "const asked = [];",
            "const pages = { 3: { upload_id: 'U', parts: [part(3), part(4)], next_part: 5 },",
            "                5: { upload_id: 'U', parts: [part(5)], next_part: null } };",
            "const fetchPage = async (first) => { asked.push(first); return pages[first]; };",
            "(async () => {",
            "  const partAt = partLister(init, fetchPage);",
            "  const got = await Promise.all([4, 2, 3, 0, 1].map((i) => partAt(i)));",
            "  let error = null;",
            "  try { await partAt(5); } catch (e) { error = e.message; }",
            "  const other = partLister({ ...init }, async () => ({ upload_id: 'V', parts: [] }));",
            "  let replaced = null;",
            "  try { await other(2); } catch (e) { replaced = e.message; }",
            "  console.log(JSON.stringify({ got: got.map((p) => p.part_number), asked, error,",
            "                               replaced }));",
            "})();",
        ]
    )
    assert NODE is not None
    answer = subprocess.run(
        [NODE, "-e", script], capture_output=True, text=True, timeout=60, check=True
    )
    out = json.loads(answer.stdout)
    assert out["got"] == [5, 3, 4, 1, 2]
    assert out["asked"] == [3, 5]
    assert "never listed" in out["error"] and "replaced" in out["replaced"]
