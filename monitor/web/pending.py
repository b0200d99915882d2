"""Pending authorizations: the connect flow's only state, and its PKCE pair.

`GET /connect/{id}` creates one: a random `state` (the key), bound to one connection, with
a PKCE `code_verifier` (RFC 7636, S256) and the `redirect_uri` the authorize request used.
`GET /oauth/callback` takes it: single use (taken out whether it is still fresh or not),
10 minutes of life on the daemon's clock. At most `capacity` wait at once; the oldest go
first. Held in memory only: a restart forgets them, and the user starts again.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from monitor.clock import Clock
from monitor.secret import Secret

log = logging.getLogger("monitor.web")

STATE_TTL: Final = 600.0
DEFAULT_CAPACITY: Final = 1000


def new_code_verifier() -> Secret:
    """86 characters of base64url from 64 random bytes (RFC 7636 allows 43 to 128)."""
    return Secret(secrets.token_urlsafe(64))


def code_challenge(verifier: Secret) -> str:
    """S256: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.reveal().encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class PendingAuthorization:
    connection_id: str
    code_verifier: Secret
    redirect_uri: str
    created_at: float
    expires_at: float

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


class PendingAuthorizations:
    def __init__(
        self, clock: Clock, *, ttl: float = STATE_TTL, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        if ttl <= 0 or capacity < 1:
            raise ValueError("ttl and capacity must be positive")
        self._clock = clock
        self._ttl = ttl
        self._capacity = capacity
        self._pending: OrderedDict[str, PendingAuthorization] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def begin(self, connection_id: str, redirect_uri: str) -> tuple[str, PendingAuthorization]:
        """A new `state` for `connection_id`, and what the callback will need."""
        now = self._clock.now()
        self._prune(now)
        while len(self._pending) >= self._capacity:
            _, dropped = self._pending.popitem(last=False)
            log.warning("connect.pending_dropped", extra={"connection": dropped.connection_id})
        state = secrets.token_urlsafe(32)
        pending = PendingAuthorization(
            connection_id=connection_id,
            code_verifier=new_code_verifier(),
            redirect_uri=redirect_uri,
            created_at=now,
            expires_at=now + self._ttl,
        )
        self._pending[state] = pending
        return state, pending

    def take(self, state: str) -> PendingAuthorization | None:
        """Remove and return the authorization waiting under `state`, fresh or expired;
        None if there is none (never issued, already used, or long forgotten)."""
        return self._pending.pop(state, None)

    def forget_connection(self, connection_id: str) -> None:
        """Drop every other flow of a connection that was just authorized."""
        for state in [s for s, p in self._pending.items() if p.connection_id == connection_id]:
            del self._pending[state]

    def _prune(self, now: float) -> None:
        # Insertion order is expiry order: the life is the same for all.
        while self._pending:
            state, oldest = next(iter(self._pending.items()))
            if not oldest.expired(now):
                break
            del self._pending[state]
