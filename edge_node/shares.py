"""Share-URL checks with the control plane's public keys, remembering proven signatures.

An Ed25519 verification costs about as much CPU as serving a small cached range,
and a player sends the same signed query with every range it asks for. So the
policy a query proved is kept in a bounded LRU keyed by the file id and the exact
query, and a repeat skips only the signature: expiry, start time and the client's
address are checked on every request, exactly as ``ShareVerifier.verify`` does.
New keys from a heartbeat clear what was proven with the old ones.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping

from fsnode_core.errors import Forbidden
from fsnode_core.folder_tokens import FolderPolicy, folder_path, verify_folder_token
from fsnode_core.signing import SharePolicy, ShareVerifier, check_window
from fsnode_core.version_tickets import VersionTicket, open_ticket

# Proven (file id, query) pairs kept; a player reuses one query for a whole file.
PROVEN_QUERIES = 4096

_QueryKey = tuple[str, tuple[tuple[str, str], ...]]


class ShareKeys:
    """The share-signature public keys; replaced whole when heartbeats bring new ones."""

    def __init__(self, pems: Mapping[str, str] | None = None) -> None:
        self._pems: dict[str, str] = {}
        self._verifier = ShareVerifier({})
        self._proven: OrderedDict[_QueryKey, SharePolicy] = OrderedDict()
        self._tokens: OrderedDict[str, FolderPolicy] = OrderedDict()
        self._tickets: OrderedDict[str, VersionTicket] = OrderedDict()
        if pems:
            self.update(pems)

    def update(self, pems: Mapping[str, str]) -> None:
        if dict(pems) != self._pems:
            self._verifier = ShareVerifier.from_pems(pems)
            self._pems = dict(pems)
            # A key that is gone must stop admitting what it signed.
            self._proven.clear()
            self._tokens.clear()
            self._tickets.clear()

    def verify(
        self, file_id: str, query: Mapping[str, str], client_ip: str | None = None
    ) -> SharePolicy:
        """The file share's policy for ``file_id`` (Forbidden if none); ``policy.version``
        is the redirect's pin (None: serve the current version)."""
        # items(), not a dict: a repeated parameter is part of what was proven.
        key: _QueryKey = (file_id, tuple(query.items()))
        policy = self._proven.get(key)
        if policy is None:
            policy = self._verifier.verify(file_id, query, client_ip=client_ip)
            self._proven[key] = policy
            if len(self._proven) > PROVEN_QUERIES:
                self._proven.popitem(last=False)
            return policy
        self._proven.move_to_end(key)
        # The signature is proven; what depends on the moment or the client is not.
        moment = time.time()
        if moment >= policy.expires:
            self._proven.pop(key, None)
            raise Forbidden("share URL has expired", expired_at=policy.expires)
        if policy.not_before is not None and moment < policy.not_before:
            raise Forbidden("share URL is not valid yet", not_before=policy.not_before)
        if not policy.admits(client_ip):
            raise Forbidden("share URL is not valid from this address")
        return policy

    def open_folder(
        self, token: str, raw_path: str, client_ip: str | None = None
    ) -> tuple[FolderPolicy, str]:
        """A folder share's policy and the path asked for below it, relative to the
        folder (``fsnode_core.folder_tokens.open_folder_share``): Forbidden for a bad
        token, InvalidInput for path tricks. A token's signature is checked once; its
        time window, the client's address and the path on every request."""
        policy = self._tokens.get(token)
        if policy is None:
            policy = verify_folder_token(self._verifier, token, client_ip=client_ip)
            self._tokens[token] = policy
            if len(self._tokens) > PROVEN_QUERIES:
                self._tokens.popitem(last=False)
        else:
            self._tokens.move_to_end(token)
            check_window(policy.expires, policy.not_before, None)
            if not policy.admits(client_ip):
                raise Forbidden("share URL is not valid from this address")
        return policy, folder_path(policy, raw_path)

    def ticket(self, policy: SharePolicy) -> VersionTicket | None:
        """The verified version ticket of a pinned file share (None without one);
        Forbidden for a ticket that proves nothing. Its age is the caller's bound."""
        token, version = policy.ticket, policy.version
        if token is None or version is None:
            return None
        ticket = self._tickets.get(token)
        if ticket is None:
            ticket = open_ticket(self._verifier, token, policy.file_id, version)
            self._tickets[token] = ticket
            if len(self._tickets) > PROVEN_QUERIES:
                self._tickets.popitem(last=False)
        else:
            self._tickets.move_to_end(token)
        return ticket

    @property
    def proven(self) -> int:
        """Queries whose signature is remembered."""
        return len(self._proven)
