"""The published S3 layout and codecs (``fsnode_core.published``), shared by the control
plane (writer) and the edges (readers)."""

from __future__ import annotations

import hashlib
import json

import pytest
from fsnode_core.digests import chunks_digest
from fsnode_core.errors import OriginError
from fsnode_core.ids import new_id
from fsnode_core.paths import MAX_PATH_BYTES, is_valid_path
from fsnode_core.published import Head, Origin, UploadDeclaration, VersionManifest
from fsnode_core.published_keys import (
    TREE_SUFFIX,
    head_key,
    parse_tree_key,
    parse_tree_page,
    publish_seq,
    resolve_tree,
    tree_folder_prefix,
    tree_key,
    tree_path_prefix,
    version_manifest_key,
)
from hypothesis import given
from hypothesis import strategies as st

FILE, VERSION = new_id(), new_id()
DIGESTS = [hashlib.sha256(bytes([i])).hexdigest() for i in range(3)]


def manifest(**change: object) -> VersionManifest:
    fields: dict[str, object] = dict(
        file_id=FILE,
        version=VERSION,
        path="media/a.ts",
        size=2 * 1024 + 1,
        chunk_size=1024,
        content_type="video/mp2t",
        etag="abc-2",
        last_modified=1_700_000_000,
        source="upload",
        origin=Origin("bucket", f"files/{FILE}/{VERSION}"),
        chunk_sha256="".join(DIGESTS),
        chunks_sha256=chunks_digest(DIGESTS),
    )
    fields.update(change)
    return VersionManifest(**fields)  # type: ignore[arg-type]


def test_keys() -> None:
    assert version_manifest_key(FILE, VERSION) == f"meta/v1/files/{FILE}/v/{VERSION}.json"
    assert head_key(FILE) == f"meta/v1/files/{FILE}/head.json"
    key = tree_key("media/a.ts", 12, FILE, VERSION)
    assert key == f"meta/v1/tree/media/a.ts!{12:016d}.{FILE}.{VERSION}"
    assert len(key) - len("meta/v1/tree/media/a.ts") == TREE_SUFFIX
    assert tree_folder_prefix("media/") == "meta/v1/tree/media/"
    assert tree_path_prefix("media/a.ts") == "meta/v1/tree/media/a.ts!"
    assert len(str(publish_seq())) == 16


def test_manifest_round_trip_and_hash_access() -> None:
    m = manifest()
    again = VersionManifest.from_json(m.to_json())
    assert again == m and again.chunk_count == 3
    assert [again.chunk_hash(i) for i in range(3)] == DIGESTS == again.chunk_hashes()
    with pytest.raises(IndexError):
        again.chunk_hash(3)
    unhashed = manifest(
        chunk_sha256=None, chunks_sha256=None, source="import", origin=Origin("b", "k", "v1", "e")
    )
    assert VersionManifest.from_json(unhashed.to_json()).chunk_hash(0) is None
    assert json.loads(m.to_json())["format"] == 1
    assert (
        chunks_digest(DIGESTS)
        == hashlib.sha256(b"".join(bytes.fromhex(d) for d in DIGESTS)).hexdigest()
    )
    assert chunks_digest([]) == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    "change",
    [
        {"format": 2},
        {"file_id": "x"},
        {"version": None},
        {"path": "../a"},
        {"path": "a//b"},
        {"size": -1},
        {"size": True},
        {"chunk_size": 0},
        {"etag": ""},
        {"source": "other"},
        {"origin": None},
        {"origin": {"bucket": "b"}},
        {"chunk_sha256": "ab"},
        {"chunk_sha256": "".join(DIGESTS).upper()},
        {"chunk_sha256": "".join(DIGESTS[:2])},
        {"chunks_sha256": "0" * 64},
        {"declared": True},
        {"last_modified": "x"},
    ],
)
def test_malformed_manifests_are_refused(change: dict[str, object]) -> None:
    data = {**json.loads(manifest().to_json()), **change}
    with pytest.raises(OriginError):
        VersionManifest.from_json(json.dumps(data))


def test_garbage_is_refused() -> None:
    for raw in (b"", b"[]", b"\xff", b"{", "null"):
        with pytest.raises(OriginError):
            VersionManifest.from_json(raw)
        with pytest.raises(OriginError):
            Head.from_json(raw)


def test_declarations_are_not_manifests() -> None:
    declared = UploadDeclaration(
        FILE, VERSION, "a.ts", 2049, 1024, "video/mp2t", "".join(DIGESTS), DIGESTS[0]
    )
    raw = declared.to_json()
    assert UploadDeclaration.from_json(raw) == declared
    assert declared.part_hashes() == DIGESTS[:1]
    with pytest.raises(OriginError):
        VersionManifest.from_json(raw)
    with pytest.raises(OriginError):
        UploadDeclaration.from_json(manifest().to_json())


def test_heads() -> None:
    head = Head(FILE, "a.ts", "ready", VERSION, 5, 1000, 7)
    assert Head.from_json(head.to_json()) == head
    assert head.serves(VERSION, now=999) and not head.serves(VERSION, now=1000)
    assert not head.serves(new_id(), now=1)
    gone = Head(FILE, "a.ts", "deleted", None, 6, None, 8)
    assert Head.from_json(gone.to_json()) == gone and not gone.serves(VERSION, now=1)
    for bad in (
        {"status": "ready", "version": None},
        {"status": "deleted"},
        {"status": "x"},
        {"seq": -1},
        {"path": ""},
    ):
        data = {**json.loads(head.to_json()), **bad}
        with pytest.raises(OriginError):
            Head.from_json(json.dumps(data))


def test_tree_pages_take_the_highest_seq_and_stay_in_the_folder() -> None:
    a, b, c = new_id(), new_id(), new_id()
    keys = [
        tree_key("media/t/a.ts", 5, a, VERSION),
        tree_key("media/t/a.ts", 9, a, b),  # an overwrite whose old key is not gone yet
        tree_key("media/t/hi/x.m4s", 3, c, VERSION),
        tree_key("media/t2/a.ts", 1, c, VERSION),  # a sibling folder: not ours
        tree_key("media/t/a.ts!x", 4, b, VERSION),  # another path with "!" in it
        "meta/v1/tree/media/t/garbage",
        "meta/v1/tree/media/t/../x!" + "1" * 16 + "." + a + "." + b,
    ]
    page = parse_tree_page(keys, "media/t/")
    assert set(page) == {"a.ts", "hi/x.m4s", "a.ts!x"}
    assert (page["a.ts"].seq, page["a.ts"].version) == (9, b)
    assert page["hi/x.m4s"].file_id == c
    assert resolve_tree(keys, "media/t/a.ts") == page["a.ts"]
    assert resolve_tree(keys, "media/t/none.ts") is None
    assert set(parse_tree_page(keys, "")) == {
        "media/t/a.ts",
        "media/t/hi/x.m4s",
        "media/t2/a.ts",
        "media/t/a.ts!x",
    }


_segments = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\x85"),
    min_size=1,
    max_size=8,
).filter(lambda s: s not in (".", ".."))


@given(
    st.lists(_segments, min_size=1, max_size=4).map("/".join).filter(is_valid_path),
    st.integers(min_value=0, max_value=10**16 - 1),
)
def test_tree_keys_parse_from_the_right(path: str, seq: int) -> None:
    entry = parse_tree_key(tree_key(path, seq, FILE, VERSION))
    assert entry is not None and (entry.path, entry.seq, entry.file_id, entry.version) == (
        path,
        seq,
        FILE,
        VERSION,
    )
    assert entry.key == tree_key(path, seq, FILE, VERSION)


def test_the_longest_path_fits_s3() -> None:
    key = tree_key("a" * MAX_PATH_BYTES, 1, FILE, VERSION)
    assert len(key.encode()) <= 1024
