"""Share policies beyond one file: client address ranges, start times and prefixes."""

from __future__ import annotations

import pytest
from fsnode_core.errors import Forbidden
from fsnode_core.signing import (
    SharePolicy,
    ShareSigner,
    ShareVerifier,
    canonical_network,
    private_key_from_seed,
    public_key_pem,
)
from hypothesis import given
from hypothesis import strategies as st

FILE = "0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000
_KEY = private_key_from_seed("p" * 48)
SIGNER = ShareSigner("k1", _KEY)
VERIFIER = ShareVerifier.from_pems({"k1": public_key_pem(_KEY)})


def test_plain_file_shares_sign_the_same_message_as_before() -> None:
    policy = SharePolicy(FILE, "3", NOW + 60)
    assert policy.message() == f"fsnode-share-v1\nf={FILE}\nv=3\nexp={NOW + 60}".encode()
    assert set(SIGNER.sign(policy)) == {"v", "exp", "kid", "sig"}


def test_ip_bound_shares_need_a_client_inside_the_range() -> None:
    query = SIGNER.sign(SharePolicy(FILE, "3", NOW + 60, ip="10.1.0.0/16"))
    assert VERIFIER.verify(FILE, query, now=NOW, client_ip="10.1.2.3").ip == "10.1.0.0/16"
    for client in ("10.2.0.1", None, "not-an-ip", "::1"):
        with pytest.raises(Forbidden):
            VERIFIER.verify(FILE, query, now=NOW, client_ip=client)
    with pytest.raises(Forbidden, match="signature"):
        VERIFIER.verify(FILE, {**query, "ip": "0.0.0.0/0"}, now=NOW, client_ip="10.2.0.1")
    stripped = {k: v for k, v in query.items() if k != "ip"}
    with pytest.raises(Forbidden, match="signature"):
        VERIFIER.verify(FILE, stripped, now=NOW, client_ip="10.2.0.1")


def test_prefix_shares_fail_closed_unless_the_caller_checks_names() -> None:
    query = SIGNER.sign(SharePolicy(FILE, "", NOW + 60, prefix="show/ep1/"))
    assert "v" not in query and query["pfx"] == "show/ep1/"
    with pytest.raises(Forbidden, match="prefix"):
        VERIFIER.verify(FILE, query, now=NOW)
    other = "f" * 32
    policy = VERIFIER.verify(other, query, now=NOW, allow_prefix=True)
    assert policy.covers("show/ep1/seg9.ts") and not policy.covers("show/ep2/seg1.ts")
    # A prefix signature never passes as a file share, nor the other way round.
    as_file = {**{k: v for k, v in query.items() if k != "pfx"}, "v": "show/ep1/"}
    with pytest.raises(Forbidden):
        VERIFIER.verify(FILE, as_file, now=NOW, allow_prefix=True)


@given(st.text(min_size=1, max_size=40))
def test_no_version_text_forges_another_policy(version: str) -> None:
    signed = SIGNER.sign(SharePolicy(FILE, "1", NOW + 60, ip="10.0.0.0/8"))
    forged = {"v": version, "exp": str(NOW + 60), "kid": "k1", "sig": signed["sig"]}
    with pytest.raises(Forbidden):
        VERIFIER.verify(FILE, forged, now=NOW, client_ip="192.168.1.1")


def test_networks_are_canonical() -> None:
    assert canonical_network("10.1.2.3/16") == "10.1.0.0/16"
    assert canonical_network("2001:db8::1/64") == "2001:db8::/64"
    with pytest.raises(ValueError):
        canonical_network("nope")
