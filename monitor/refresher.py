"""Token renewal: each connection's refresh job and the calendar it keeps.

The job obtains a token at the planned time of the credential calendar (`timing`): before
the access token runs out, and for a password grant before the refresh token reaches its
fixed end of life. After a failed answer it backs off on transient faults, retries
quickly after a rejection until the evidence is in, and slowly once the credentials are
known dead. An authorization_code connection without tokens waits for a person.
"""

from __future__ import annotations

import logging
import random
from typing import Protocol

from monitor.clock import Clock
from monitor.connection import Connection
from monitor.credentials import Credentials
from monitor.health import CREDENTIAL_FAILURES
from monitor.health_log import HealthLog
from monitor.model import Grant, HistoryEntry, HistoryKind, TokenFailure, TokenResult
from monitor.telemetry.context import CONNECTION
from monitor.timing import backoff, refresh_at, renew_refresh_at

# The keeper's logger: these lines were always the keeper's, and dashboards know them so.
log = logging.getLogger("snowmon.keeper")

EVIDENCE_RETRY = 2.5  # seconds between token requests while a rejection is being confirmed
DEAD_RETRY = 600.0  # seconds between token requests once credentials are known dead
HIBERNATION_RETRY = 300.0
IDLE_RETRY = 5.0  # seconds before looking again when no token request could start


class RefreshMetrics(Protocol):
    def token_result(self, connection_id: str, result: TokenResult) -> None: ...


class Refresher:
    def __init__(
        self,
        *,
        credentials: Credentials,
        clock: Clock,
        metrics: RefreshMetrics,
        health: HealthLog,
        rng: random.Random,
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._metrics = metrics
        self._health = health
        self._rng = rng

    async def run(self, conn: Connection) -> float | None:
        """The refresh job: returns when it should run next."""
        token = CONNECTION.set(conn.id)
        try:
            return await self._due(conn)
        except Exception:
            # The per-connection boundary: a bug here must not stop the fleet.
            log.exception("refresh.crashed", extra={"connection": conn.id})
            return self._clock.now() + DEAD_RETRY
        finally:
            CONNECTION.reset(token)

    async def _due(self, conn: Connection) -> float | None:
        now = self._clock.now()
        planned = self.next_refresh(conn, now)
        if planned is not None and planned > now:
            return planned
        asked = conn.last_token_result
        await self._credentials.obtain(conn)
        now = self._clock.now()
        following = self.next_refresh(conn, now)
        if conn.last_token_result is asked and following is not None and following <= now:
            # No request could start (the lease is not certain yet): look again soon
            # rather than spin.
            return now + IDLE_RETRY
        return following

    def next_refresh(self, conn: Connection, now: float) -> float | None:
        """When the refresh job should run next; None = only when a person acts."""
        if conn.retry_at is not None:
            return conn.retry_at
        tokens = conn.tokens
        if tokens is None:
            if conn.settings.grant is Grant.AUTHORIZATION_CODE:
                return None
            return now
        due = refresh_at(tokens, conn.jitter)
        if conn.settings.grant is Grant.PASSWORD:
            renew = renew_refresh_at(tokens)
            if renew is not None:
                due = min(due, renew)
        return due

    def answered(self, conn: Connection, result: TokenResult) -> None:
        """Every answer of the token endpoint: record it, apply it, plan the retry."""
        conn.last_token_result = result
        self._metrics.token_result(conn.id, result)
        now = self._clock.now()
        self._health.record(
            HistoryEntry(
                conn.id,
                now,
                HistoryKind.REFRESH if result.grant is Grant.REFRESH_TOKEN else HistoryKind.GRANT,
                "ok" if result.ok else str(result.failure),
                result.detail,
                result.duration,
                result.status,
            )
        )
        self._health.apply(conn, result)
        if result.ok:
            conn.failures_in_row = 0
            conn.retry_at = None
        else:
            conn.failures_in_row += 1
            conn.retry_at = now + self._retry_delay(conn, result, now)
        log.log(
            logging.INFO if result.ok else logging.WARNING,
            "token.answered",
            extra={
                "connection": conn.id,
                "grant": result.grant.value,
                "outcome": "ok" if result.ok else str(result.failure),
                "detail": result.detail,
                "status": result.status,
            },
        )

    def _retry_delay(self, conn: Connection, result: TokenResult, now: float) -> float:
        if result.failure in CREDENTIAL_FAILURES:
            return DEAD_RETRY if conn.credentials_expired else EVIDENCE_RETRY
        if result.failure is TokenFailure.HIBERNATING:
            return HIBERNATION_RETRY
        tokens = conn.tokens
        until = tokens.access_expires_at if tokens is not None else None
        delay = backoff(conn.failures_in_row, self._rng, until=until, now=now)
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)
        return delay
