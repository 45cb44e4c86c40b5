"""Version tickets (``fsnode_core.version_tickets``): one spelling, signed by the share
keyring, bound to one file version, honoured no longer than a head read nor past the
file's expiry."""

from __future__ import annotations

from typing import Any

import pytest
from fsnode_core.errors import Forbidden
from fsnode_core.signing import ShareSigner, ShareVerifier, b64url, private_key_from_seed
from fsnode_core.version_tickets import VersionTicket, mint_ticket, open_ticket

SEED = "version-ticket-unit-test-seed-0123456789"
SIGNER = ShareSigner("k1", private_key_from_seed(SEED))
VERIFIER = ShareVerifier({"k1": private_key_from_seed(SEED).public_key()})
FILE, VERSION = "a" * 32, "b" * 32
TICKET = VersionTicket(
    file_id=FILE,
    version=VERSION,
    issued=1_800_000_000,
    size=12345,
    chunk_size=4096,
    etag="0123abcd-2",
    last_modified=1_700_000_000,
    path="media/trailer/ünïcode file.mp4",
    content_type="video/mp4",
    file_expires=0,
    kid="k1",
)


def test_a_minted_ticket_opens_to_itself() -> None:
    assert open_ticket(VERIFIER, mint_ticket(SIGNER, TICKET), FILE, VERSION) == TICKET


def test_a_ticket_is_honoured_for_the_head_bound_and_never_past_the_file_expiry() -> None:
    assert TICKET.honoured_until(30) == TICKET.issued + 30
    expiring = VersionTicket(**{**_fields(TICKET), "file_expires": TICKET.issued + 10})
    assert expiring.honoured_until(30) == TICKET.issued + 10


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (lambda t: t + "x", "share URL signature is not valid"),
        (lambda t: t.replace(".", ".."), "share URL has a malformed version ticket"),
        (lambda t: "a" * 9000, "share URL has a malformed version ticket"),
        (
            lambda t: (
                b64url(TICKET.payload().replace(b"size=12345", b"size=012345"))
                + "."
                + t.partition(".")[2]
            ),
            "share URL has a malformed version ticket",
        ),
        (
            lambda t: b64url(TICKET.payload() + b"\nextra=1") + "." + t.partition(".")[2],
            "share URL has a malformed version ticket",
        ),
    ],
)
def test_altered_or_malformed_tickets_are_refused(token: object, message: str) -> None:
    minted = mint_ticket(SIGNER, TICKET)
    with pytest.raises(Forbidden) as refused:
        open_ticket(VERIFIER, token(minted), FILE, VERSION)  # type: ignore[operator]
    assert refused.value.message == message


def test_a_ticket_is_bound_to_its_file_and_version() -> None:
    minted = mint_ticket(SIGNER, TICKET)
    for file_id, version in ((FILE, "c" * 32), ("c" * 32, VERSION)):
        with pytest.raises(Forbidden, match="another file or version"):
            open_ticket(VERIFIER, minted, file_id, version)


def test_a_signer_refuses_what_no_verifier_would_take() -> None:
    with pytest.raises(ValueError, match="names the key"):
        mint_ticket(SIGNER, VersionTicket(**{**_fields(TICKET), "kid": "k2"}))
    with pytest.raises(ValueError, match="single lines"):
        mint_ticket(SIGNER, VersionTicket(**{**_fields(TICKET), "path": "a\nb"}))


def _fields(ticket: VersionTicket) -> dict[str, Any]:
    return {name: getattr(ticket, name) for name in VersionTicket.__slots__}
