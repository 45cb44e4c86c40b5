"""Share signatures: what verifies, and every way a share is refused."""

from __future__ import annotations

import json

import pytest
from fsnode_core.errors import Forbidden
from fsnode_core.signing import (
    SharePolicy,
    ShareSigner,
    ShareVerifier,
    parse_keyring,
    private_key_from_seed,
    public_key_pem,
)

FILE = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
NOW = 1_800_000_000


@pytest.fixture
def keys() -> tuple[ShareSigner, ShareVerifier]:
    key = private_key_from_seed("s" * 48)
    return ShareSigner("k1", key), ShareVerifier.from_pems({"k1": public_key_pem(key)})


def test_a_fresh_share_verifies(keys: tuple[ShareSigner, ShareVerifier]) -> None:
    signer, verifier = keys
    query = signer.sign(SharePolicy(FILE, "3", NOW + 60))

    assert verifier.verify(FILE, query, now=NOW) == SharePolicy(FILE, "3", NOW + 60)


@pytest.mark.parametrize(
    ("file_id", "change", "reason"),
    [
        (FILE, {"exp": str(NOW + 10**6)}, "signature"),
        (FILE, {"v": "4"}, "signature"),
        (OTHER, {}, "signature"),
        (FILE, {"sig": "AAAA"}, "signature"),
        (FILE, {"sig": ""}, "signature"),
        (FILE, {"sig": "!!!not base64!!!"}, "signature"),
        (FILE, {"kid": "k9"}, "unknown signing key"),
        (FILE, {"exp": "soon"}, "expiry"),
        (FILE, {"v": ""}, "version"),
    ],
)
def test_tampered_shares_are_forbidden(
    keys: tuple[ShareSigner, ShareVerifier], file_id: str, change: dict[str, str], reason: str
) -> None:
    signer, verifier = keys
    query = {**signer.sign(SharePolicy(FILE, "3", NOW + 60)), **change}

    with pytest.raises(Forbidden, match=reason):
        verifier.verify(file_id, query, now=NOW)


def test_expired_and_not_yet_valid_shares_are_forbidden(
    keys: tuple[ShareSigner, ShareVerifier],
) -> None:
    signer, verifier = keys
    expired = signer.sign(SharePolicy(FILE, "1", NOW))
    early = signer.sign(SharePolicy(FILE, "1", NOW + 60, not_before=NOW + 30))

    with pytest.raises(Forbidden, match="expired"):
        verifier.verify(FILE, expired, now=NOW)
    with pytest.raises(Forbidden, match="not valid yet"):
        verifier.verify(FILE, early, now=NOW)
    assert verifier.verify(FILE, early, now=NOW + 30).not_before == NOW + 30


def test_a_signature_from_another_key_is_forbidden() -> None:
    signer = ShareSigner("k1", private_key_from_seed("a" * 48))
    verifier = ShareVerifier.from_pems({"k1": public_key_pem(private_key_from_seed("b" * 48))})

    with pytest.raises(Forbidden):
        verifier.verify(FILE, signer.sign(SharePolicy(FILE, "1", NOW + 60)), now=NOW)


def test_rotated_keyring_keeps_old_links_working() -> None:
    old_kid, old_keys = parse_keyring(json.dumps({"active": "k1", "k1": "x" * 48}))
    new_kid, new_keys = parse_keyring(json.dumps({"active": "k2", "k1": "x" * 48, "k2": "y" * 48}))
    old_link = ShareSigner(old_kid, old_keys[old_kid]).sign(SharePolicy(FILE, "1", NOW + 60))
    verifier = ShareVerifier.from_pems({kid: public_key_pem(k) for kid, k in new_keys.items()})

    assert new_kid == "k2"
    assert verifier.verify(FILE, old_link, now=NOW).file_id == FILE


def test_keyring_must_hold_its_active_key() -> None:
    with pytest.raises(ValueError, match="not in the keyring"):
        parse_keyring(json.dumps({"active": "k2", "k1": "x" * 48}))


def test_short_seeds_are_refused() -> None:
    with pytest.raises(ValueError):
        private_key_from_seed("short")
