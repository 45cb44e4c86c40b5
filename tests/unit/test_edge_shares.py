"""Share checks on the edge (edge_node.shares): a proven signature is remembered,
while expiry, start time and the client's address are checked on every request."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fsnode_core.errors import Forbidden
from fsnode_core.ids import new_id
from fsnode_core.signing import (
    SharePolicy,
    ShareSigner,
    ShareVerifier,
    private_key_from_seed,
    public_key_pem,
)

from edge_node import shares
from edge_node.shares import ShareKeys

SEED = "edge-shares-unit-test-seed-0123456789abcdef"
OTHER_SEED = "edge-shares-unit-test-other-seed-0123456789"


def keys_for(seed: str, kid: str = "k1") -> dict[str, str]:
    return {kid: public_key_pem(private_key_from_seed(seed))}


def sign(policy: SharePolicy, seed: str = SEED, kid: str = "k1") -> dict[str, str]:
    return ShareSigner(kid, private_key_from_seed(seed)).sign(policy)


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """File ids whose signature was actually checked (not taken from memory)."""
    seen: list[str] = []
    real = ShareVerifier.verify

    def counting(self: ShareVerifier, file_id: str, *args: Any, **kwargs: Any) -> SharePolicy:
        seen.append(file_id)
        return real(self, file_id, *args, **kwargs)

    monkeypatch.setattr(ShareVerifier, "verify", counting)
    return seen


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The time the share checks see; tests move it by assigning ``clock[0]``."""
    now = [time.time()]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


def test_a_repeated_query_is_proven_once(verifications: list[str]) -> None:
    keys = ShareKeys(keys_for(SEED))
    file_id = new_id()
    query = sign(SharePolicy(file_id, int(time.time()) + 600))
    first = keys.verify(file_id, query)
    for _ in range(5):
        assert keys.verify(file_id, dict(query)) == first
    assert verifications == [file_id]
    assert keys.proven == 1


def test_what_was_proven_covers_only_that_file_and_query(verifications: list[str]) -> None:
    keys = ShareKeys(keys_for(SEED))
    file_id = new_id()
    query = sign(SharePolicy(file_id, int(time.time()) + 600))
    keys.verify(file_id, query)
    with pytest.raises(Forbidden):
        keys.verify(new_id(), query)  # the same query for another file
    longer = {**query, "exp": str(int(query["exp"]) + 3600)}
    with pytest.raises(Forbidden):
        keys.verify(file_id, longer)  # a stretched expiry under the old signature
    assert keys.proven == 1


def test_a_remembered_share_still_expires(clock: list[float]) -> None:
    keys = ShareKeys(keys_for(SEED))
    file_id = new_id()
    query = sign(SharePolicy(file_id, int(clock[0]) + 60))
    keys.verify(file_id, query)
    clock[0] += 61
    with pytest.raises(Forbidden, match="expired"):
        keys.verify(file_id, query)


def test_a_remembered_share_still_waits_for_its_start(clock: list[float]) -> None:
    keys = ShareKeys(keys_for(SEED))
    file_id = new_id()
    start = int(clock[0])
    query = sign(SharePolicy(file_id, start + 600, not_before=start))
    keys.verify(file_id, query)
    clock[0] = start - 10  # a clock stepped back: the cached policy is checked again
    with pytest.raises(Forbidden, match="not valid yet"):
        keys.verify(file_id, query)


def test_a_remembered_share_still_checks_the_client_address(verifications: list[str]) -> None:
    keys = ShareKeys(keys_for(SEED))
    file_id = new_id()
    query = sign(SharePolicy(file_id, int(time.time()) + 600, ip="10.1.0.0/16"))
    keys.verify(file_id, query, "10.1.2.3")
    keys.verify(file_id, query, "10.1.9.9")
    for outside in ("10.2.0.1", None):
        with pytest.raises(Forbidden, match="address"):
            keys.verify(file_id, query, outside)
    assert verifications == [file_id]


def test_new_keys_forget_what_the_old_ones_proved() -> None:
    keys = ShareKeys(keys_for(SEED))
    file_id = new_id()
    query = sign(SharePolicy(file_id, int(time.time()) + 600))
    keys.verify(file_id, query)
    keys.update(keys_for(OTHER_SEED))  # k1 is now another key
    assert keys.proven == 0
    with pytest.raises(Forbidden):
        keys.verify(file_id, query)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shares, "PROVEN_QUERIES", 8)
    keys = ShareKeys(keys_for(SEED))
    for _ in range(20):
        file_id = new_id()
        keys.verify(file_id, sign(SharePolicy(file_id, int(time.time()) + 600)))
    assert keys.proven == 8
