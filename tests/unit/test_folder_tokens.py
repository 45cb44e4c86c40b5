"""Folder-share tokens (``fsnode_core.folder_tokens``): canonical, signed over prefix,
expiry, start and network, and covering exactly their folder by path segments."""

from __future__ import annotations

import base64

import pytest
from fsnode_core.errors import Forbidden, InvalidInput
from fsnode_core.folder_tokens import (
    FolderPolicy,
    folder_path,
    mint_folder_token,
    open_folder_share,
    parse_payload,
    verify_folder_token,
)
from fsnode_core.paths import MAX_PATH_BYTES, is_valid_path, url_path
from fsnode_core.signing import ShareSigner, ShareVerifier, private_key_from_seed, public_key_pem
from hypothesis import given
from hypothesis import strategies as st

SEED = "folder-token-test-seed-0123456789abcdef0123"
NOW = 1_900_000_000
SIGNER = ShareSigner("k1", private_key_from_seed(SEED))
VERIFIER = ShareVerifier.from_pems({"k1": public_key_pem(private_key_from_seed(SEED))})
OTHER = ShareSigner("k1", private_key_from_seed(SEED + "-other"))

_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=10,
).filter(lambda s: s not in (".", "..") and is_valid_path(s))
_paths = (
    st.lists(_segment, min_size=1, max_size=4)
    .map("/".join)
    .filter(lambda p: len(p.encode()) <= MAX_PATH_BYTES // 3)
)


def token(prefix: str = "media/trailer/", **kw: object) -> str:
    return mint_folder_token(SIGNER, prefix, NOW + 60, **kw)  # type: ignore[arg-type]


def test_round_trip_with_every_field() -> None:
    text = token(not_before=NOW - 5, ip="10.0.0.0/8")
    policy = verify_folder_token(VERIFIER, text, now=NOW, client_ip="::ffff:10.1.2.3")
    assert policy == FolderPolicy("media/trailer/", NOW + 60, "k1", NOW - 5, "10.0.0.0/8")
    payload = base64.urlsafe_b64decode(text.split(".")[0] + "==")
    assert payload == (
        b"pfx=media/trailer/\nexp="
        + str(NOW + 60).encode()
        + b"\nnbf="
        + str(NOW - 5).encode()
        + b"\nip=10.0.0.0/8\nkid=k1"
    )


def test_covers_by_whole_segments() -> None:
    policy = verify_folder_token(VERIFIER, token(), now=NOW)
    assert folder_path(policy, "media/trailer/hi/index.m3u8") == "hi/index.m3u8"
    assert folder_path(policy, "media/trailer/") == ""  # the folder itself
    for outside in ("media/trailer2/a.ts", "media/trailer", "media/a.ts", "other/x"):
        with pytest.raises(Forbidden):
            folder_path(policy, outside)
    everything = verify_folder_token(VERIFIER, token(""), now=NOW)
    assert folder_path(everything, "") == "" and folder_path(everything, "a/b") == "a/b"


@pytest.mark.parametrize(
    "raw",
    [
        "media/trailer/../secret.ts",
        "media/trailer/%2e%2e/secret.ts",
        "media/trailer/%2E%2e/secret.ts",
        "media/trailer/./a.ts",
        "media/trailer/%2e/a.ts",
        "media/trailer//a.ts",
        "media/trailer/a%00.ts",
        "media/trailer/a%0a.ts",
        "media/trailer/a%2Fb.ts",
        "media/trailer/a%5Cb.ts",
        "media/trailer/a\\b.ts",
        "media/trailer/%zz",
        "media/trailer/%ff.ts",
        "media/trailer/..",
    ],
)
def test_path_tricks_are_refused_with_400(raw: str) -> None:
    policy = verify_folder_token(VERIFIER, token(), now=NOW)
    with pytest.raises(InvalidInput):
        folder_path(policy, raw)


def test_tokens_are_checked() -> None:
    good = token()
    payload, sig = good.split(".")
    forged = mint_folder_token(OTHER, "media/", NOW + 60)
    cases = [
        forged,
        f"{payload}.{sig}=",
        f"{payload}=.{sig}",
        f"{payload}..{sig}",
        f"{payload}",
        f"{payload}.{sig}.x",
        f"{payload[:-1]}.{sig}",
        "x" * 5000,
    ]
    for bad in cases:
        with pytest.raises(Forbidden):
            verify_folder_token(VERIFIER, bad, now=NOW)
    with pytest.raises(Forbidden, match="expired"):
        verify_folder_token(VERIFIER, good, now=NOW + 60)
    with pytest.raises(Forbidden, match="not valid yet"):
        verify_folder_token(VERIFIER, token(not_before=NOW + 1), now=NOW)
    with pytest.raises(Forbidden):
        verify_folder_token(VERIFIER, token(ip="10.0.0.0/8"), now=NOW, client_ip="11.0.0.1")
    with pytest.raises(Forbidden):
        verify_folder_token(VERIFIER, token(ip="10.0.0.0/8"), now=NOW)


@pytest.mark.parametrize(
    "payload",
    [
        b"pfx=media/\nexp=01\nkid=k1",  # leading zero
        b"exp=1\npfx=media/\nkid=k1",  # order
        b"pfx=media/\nexp=1\nkid=k1\n",  # trailing line break
        b"pfx=media/\nexp=1\nexp=1\nkid=k1",  # twice
        b"pfx=media/\nexp=1\nkid=k1\nx=1",  # undefined
        b"pfx=media\nexp=1\nkid=k1",  # not a folder
        b"pfx=../\nexp=1\nkid=k1",
        b"pfx=media/\nexp=1\nip=10.0.0.1/8\nkid=k1",  # not canonical
        b"pfx=media/\nexp=1",  # no kid
        b"pfx=m\xff/\nexp=1\nkid=k1",  # not UTF-8
    ],
)
def test_payloads_parse_strictly(payload: bytes) -> None:
    with pytest.raises(Forbidden):
        parse_payload(payload)


def test_a_non_canonical_payload_never_verifies_even_when_signed() -> None:
    payload = b"pfx=media/\nexp=0" + str(NOW + 60).encode() + b"\nkid=k1"
    sig = SIGNER.sign_bytes(b"fsnode-share-v2\n" + payload)
    text = (
        base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        + "."
        + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    )
    with pytest.raises(Forbidden):
        verify_folder_token(VERIFIER, text, now=NOW)


def test_minting_refuses_what_no_verifier_takes() -> None:
    for prefix in ("media", "/", "a//"):
        with pytest.raises(ValueError):
            mint_folder_token(SIGNER, prefix, NOW)
    with pytest.raises(ValueError):
        mint_folder_token(SIGNER, "m/", NOW, ip="10.0.0.1/8")


@given(folder=_paths, rest=_paths)
def test_every_path_below_resolves_and_nothing_else_does(folder: str, rest: str) -> None:
    text = mint_folder_token(SIGNER, folder + "/", NOW + 60)
    policy, relative = open_folder_share(VERIFIER, text, url_path(folder + "/" + rest), NOW)
    assert relative == rest and policy.prefix + relative == folder + "/" + rest
    with pytest.raises(Forbidden):  # the sibling folder whose name extends this one
        open_folder_share(VERIFIER, text, url_path(folder + "x/" + rest), NOW)
    with pytest.raises(InvalidInput):
        open_folder_share(VERIFIER, text, url_path(folder) + "/../" + url_path(rest), NOW)


@given(st.binary(min_size=1, max_size=200))
def test_random_tokens_never_verify(junk: bytes) -> None:
    text = base64.urlsafe_b64encode(junk).rstrip(b"=").decode()
    for candidate in (text, f"{text}.{text}"):
        with pytest.raises(Forbidden):
            verify_folder_token(VERIFIER, candidate, now=NOW)


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_breaks_the_token(position: int, flip: int) -> None:
    text = token()
    index = position % len(text)
    changed = text[:index] + chr((ord(text[index]) ^ flip) % 128) + text[index + 1 :]
    if changed != text:
        with pytest.raises(Forbidden):
            verify_folder_token(VERIFIER, changed, now=NOW)
