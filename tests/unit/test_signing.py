"""File-share signatures v2 (``fsnode_core.signing``): one spelling per share, no
parameter twice or undefined, ``::ffff:`` clients match IPv4 networks."""

from __future__ import annotations

import base64
import json

import pytest
from fsnode_core.errors import Forbidden
from fsnode_core.ids import new_id
from fsnode_core.signing import (
    SharePolicy,
    ShareSigner,
    ShareVerifier,
    admits,
    canonical_network,
    parse_keyring,
    private_key_from_seed,
    public_key_pem,
    unb64url,
)
from hypothesis import given
from hypothesis import strategies as st

SEED = "unit-test-seed-0123456789abcdef-0123456789"
NOW = 1_900_000_000
SIGNER = ShareSigner("k1", private_key_from_seed(SEED))
VERIFIER = ShareVerifier.from_pems({"k1": public_key_pem(private_key_from_seed(SEED))})
FILE = "0123456789abcdef0123456789abcdef"


def signed(**fields: object) -> dict[str, str]:
    return SIGNER.sign(SharePolicy(file_id=FILE, expires=NOW + 60, **fields))  # type: ignore[arg-type]


def test_round_trip_and_the_unsigned_pin() -> None:
    query = signed()
    assert set(query) == {"exp", "kid", "sig"}
    policy = VERIFIER.verify(FILE, query, now=NOW)
    assert (policy.file_id, policy.expires, policy.version) == (FILE, NOW + 60, None)
    version = new_id()
    pinned = VERIFIER.verify(FILE, {**query, "v": version}, now=NOW)
    assert pinned.version == version  # the pin is not signed: any current version may be named
    with pytest.raises(Forbidden):
        VERIFIER.verify(new_id(), query, now=NOW)  # another file


def test_the_message_is_v2() -> None:
    message = SharePolicy(FILE, NOW, 5, "10.0.0.0/8").message()
    assert message == f"fsnode-share-v2\nf={FILE}\nexp={NOW}\nnbf=5\nip=10.0.0.0/8".encode()


def test_a_v1_signature_does_not_verify() -> None:
    key = private_key_from_seed(SEED)
    v1 = f"fsnode-share-v1\nf={FILE}\nv=abc\nexp={NOW + 60}".encode()
    sig = base64.urlsafe_b64encode(key.sign(v1)).rstrip(b"=").decode()
    with pytest.raises(Forbidden):
        VERIFIER.verify(FILE, {"exp": str(NOW + 60), "kid": "k1", "sig": sig}, now=NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"exp": "0" + str(NOW + 60)},  # a leading zero
        {"exp": "+" + str(NOW + 60)},
        {"exp": str(NOW + 60) + " "},
        {"exp": ""},
        {"nbf": "00"},
        {"kid": "k 1"},
        {"v": "ABCDEF0123456789abcdef0123456789"},  # a pin is a lowercase id
        {"v": "../x"},
        {"ip": "10.0.0.1/8"},  # not canonical (host bits)
        {"ip": "10.0.0.0"},
        {"other": "1"},
    ],
)
def test_non_canonical_or_undefined_fields_are_refused(change: dict[str, str]) -> None:
    query = {**signed(), **change}
    with pytest.raises(Forbidden):
        VERIFIER.verify(FILE, query, now=NOW)


def test_padded_or_mangled_signatures_are_refused() -> None:
    query = signed()
    for sig in (
        query["sig"] + "=",
        query["sig"] + "==",
        "+" + query["sig"][1:],
        query["sig"][:-1],
        query["sig"] + "A",
    ):
        with pytest.raises(Forbidden):
            VERIFIER.verify(FILE, {**query, "sig": sig}, now=NOW)


def test_signatures_have_one_spelling() -> None:
    raw = bytes(range(64))
    text = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert unb64url(text) == raw
    # The last character carries unused bits: another spelling of the same bytes.
    last = text[-1]
    alias = text[:-1] + ("B" if last == "A" else chr(ord(last) + 1))
    if base64.urlsafe_b64decode(alias + "==") == raw:
        with pytest.raises(ValueError):
            unb64url(alias)


def test_duplicated_parameters_are_refused() -> None:
    query = signed()
    pairs = [*query.items(), ("exp", query["exp"])]
    with pytest.raises(Forbidden, match="repeats"):
        VERIFIER.verify(FILE, pairs, now=NOW)
    with pytest.raises(Forbidden, match="repeats"):
        VERIFIER.verify(FILE, [*query.items(), ("v", new_id()), ("v", new_id())], now=NOW)


def test_time_window_and_unknown_key() -> None:
    query = signed(not_before=NOW + 10)
    with pytest.raises(Forbidden, match="not valid yet"):
        VERIFIER.verify(FILE, query, now=NOW)
    assert VERIFIER.verify(FILE, query, now=NOW + 10).not_before == NOW + 10
    with pytest.raises(Forbidden, match="expired"):
        VERIFIER.verify(FILE, query, now=NOW + 60)
    with pytest.raises(Forbidden, match="unknown"):
        VERIFIER.verify(FILE, {**query, "kid": "k2"}, now=NOW + 20)


def test_ip_shares_and_mapped_ipv4_clients() -> None:
    query = signed(ip="192.0.2.0/24")
    assert VERIFIER.verify(FILE, query, now=NOW, client_ip="192.0.2.7")
    assert VERIFIER.verify(FILE, query, now=NOW, client_ip="::ffff:192.0.2.7")
    for client in ("192.0.3.7", "::ffff:192.0.3.7", None, "garbage", "2001:db8::1"):
        with pytest.raises(Forbidden):
            VERIFIER.verify(FILE, query, now=NOW, client_ip=client)
    assert admits("2001:db8::/32", "2001:db8::5") and not admits("2001:db8::/32", "10.0.0.1")
    assert admits("::ffff:0:0/96", "10.0.0.1")  # an IPv4 client against a mapped network


def test_signer_refuses_what_no_verifier_takes() -> None:
    for bad in ({"ip": "10.0.0.1/8"}, {"not_before": -1}):
        with pytest.raises(ValueError):
            signed(**bad)
    with pytest.raises(ValueError):
        ShareSigner("k 1", private_key_from_seed(SEED))


def test_keyring() -> None:
    active, keys = parse_keyring(json.dumps({"active": "b", "a": SEED, "b": SEED + "x"}))
    assert active == "b" and set(keys) == {"a", "b"}
    with pytest.raises(ValueError):
        parse_keyring(json.dumps({"active": "c", "a": SEED}))
    with pytest.raises(ValueError):
        private_key_from_seed("short")


@given(
    expires=st.integers(min_value=NOW + 1, max_value=10**15),
    not_before=st.none() | st.integers(min_value=0, max_value=NOW),
    prefix_len=st.integers(min_value=0, max_value=32),
)
def test_every_signed_share_verifies_and_any_changed_field_does_not(
    expires: int, not_before: int | None, prefix_len: int
) -> None:
    ip = None if prefix_len == 0 else canonical_network(f"10.0.0.0/{prefix_len}")
    query = SIGNER.sign(SharePolicy(FILE, expires, not_before, ip))
    policy = VERIFIER.verify(FILE, query, now=NOW, client_ip="10.0.0.0")
    assert (policy.expires, policy.not_before, policy.ip) == (expires, not_before, ip)
    with pytest.raises(Forbidden):
        VERIFIER.verify(FILE, {**query, "exp": str(expires + 1)}, now=NOW, client_ip="10.0.0.0")
