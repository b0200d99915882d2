"""One connection's runtime state: its configuration, tokens, health and jobs.

A plain record owned by the keeper. It holds the single-flight slot: while a token
request is in flight, `flight` is the future every other caller awaits instead of
starting a second request with the same refresh token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from monitor.model import (
    ConnectionInfo,
    ConnectionStatus,
    Grant,
    Health,
    ProbeResult,
    State,
    StoredTokens,
    TokenResult,
    TokenSet,
)
from monitor.probe import ProbeRequest
from monitor.schedule import Job
from monitor.secret import Secret
from monitor.timing import can_renew_refresh


class ProbeSettings(Protocol):
    @property
    def table(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def fields(self) -> str: ...
    @property
    def interval(self) -> float: ...
    @property
    def timeout(self) -> float: ...


class ConnectionSettings(Protocol):
    """What the keeper reads of a configured connection (config.ConnectionConfig)."""

    @property
    def id(self) -> str: ...
    @property
    def instance_url(self) -> str: ...
    @property
    def grant(self) -> Grant: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> Secret | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> Secret | None: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...
    @property
    def refresh_token_lifespan(self) -> float: ...
    @property
    def probe(self) -> ProbeSettings: ...

    def info(self) -> ConnectionInfo: ...


# (access_expires_at, refresh_expires_at, refresh_issued_at) of a stored token.
TokenTimes = tuple[float | None, float | None, float | None]


@dataclass(slots=True, eq=False)
class Connection:
    settings: ConnectionSettings
    info: ConnectionInfo
    jitter: float
    health: Health
    probe_job: Job | None = None
    refresh_job: Job | None = None
    stored: StoredTokens | None = None
    flight: asyncio.Future[TokenSet | None] | None = None
    last_token_result: TokenResult | None = None
    last_probe: ProbeResult | None = None
    failures_in_row: int = 0  # token requests that failed, for backoff
    retry_at: float | None = None  # no token request before this (backoff)
    owned: bool = True  # False while another replica holds its lease
    owner: str = ""  # the replica working on it, as last seen
    probe_request: ProbeRequest | None = None  # built on first use
    # Expiry times of the token another replica holds (PostgreSQL fleets, not owned).
    remote_times: TokenTimes | None = None
    # The last snapshot `status()` built, and what it was built from: the status API
    # asks for every connection on each request, and most have not changed since.
    _status: ConnectionStatus | None = field(default=None, repr=False)
    _status_of: tuple[object, ...] = field(default=(), repr=False)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def tokens(self) -> TokenSet | None:
        return self.stored.tokens if self.stored is not None else None

    @property
    def version(self) -> int:
        return self.stored.version if self.stored is not None else 0

    def status(self) -> ConnectionStatus:
        probe, refresh = self.probe_job, self.refresh_job
        of = (
            self.health,
            self.stored,
            probe.due if probe is not None else None,
            refresh.due if refresh is not None else None,
            self.owner,
            self.owned,
            self.remote_times,
        )
        if self._status is None or of != self._status_of:
            self._status, self._status_of = self._build_status(of[2], of[3]), of
        return self._status

    def _build_status(
        self, next_probe_at: float | None, next_refresh_at: float | None
    ) -> ConnectionStatus:
        tokens = self.tokens
        if not self.owned and self.remote_times is not None:
            access, refresh, issued = self.remote_times
        elif tokens is not None:
            access = tokens.access_expires_at
            refresh, issued = tokens.refresh_expires_at, tokens.refresh_issued_at
        else:
            access = refresh = issued = None
        return ConnectionStatus(
            info=self.info,
            health=self.health,
            access_expires_at=access,
            refresh_expires_at=refresh,
            refresh_issued_at=issued,
            can_renew_refresh=can_renew_refresh(self.info.grant),
            next_probe_at=next_probe_at,
            next_refresh_at=next_refresh_at,
            owner=self.owner,
        )

    @property
    def credentials_expired(self) -> bool:
        return self.health.state is State.CREDENTIALS_EXPIRED
