"""The keeper: keeps every connection alive and knows how each one is doing.

For each connection it runs two jobs on the scheduler:
- `refresh`: obtain a token at the planned time of the credential calendar (`timing`),
  back off on transient faults, retry quickly after a rejection until the evidence is
  in, and slowly once credentials are known dead;
- `probe`: one Table API read with a usable token; a 401 earns one refresh and one
  re-probe before it counts against the credential.
Every result goes through the pure `health` state machine; transitions and snapshots go
to metrics, the history buffer, the store (in batches) and the listeners (alerting).

It knows nothing of Slack, HTTP routes or SQL.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

import aiohttp
from opentelemetry import trace

from monitor import health as health_machine
from monitor.clock import Clock
from monitor.connection import Connection, ConnectionSettings
from monitor.credentials import CREDENTIAL_FAILURES, Credentials
from monitor.errors import StoreError
from monitor.model import (
    AuthorizeTarget,
    ConnectionStatus,
    Grant,
    Health,
    HistoryEntry,
    HistoryKind,
    ProbeReason,
    ProbeResult,
    State,
    StoredTokens,
    TokenFailure,
    TokenResult,
    TokenSet,
    Transition,
)
from monitor.probe import ProbeTarget, probe
from monitor.schedule import Job, Scheduler
from monitor.secret import Secret
from monitor.store import Store
from monitor.telemetry.context import CONNECTION
from monitor.timing import backoff, connection_jitter, refresh_at, renew_refresh_at, usable

log = logging.getLogger("snowmon.keeper")

EVIDENCE_RETRY = 2.5  # seconds between token requests while a rejection is being confirmed
DEAD_RETRY = 600.0  # seconds between token requests once credentials are known dead
HIBERNATION_RETRY = 300.0
IDLE_RETRY = 5.0  # seconds before looking again when no token request could start


class KeeperMetrics(Protocol):
    def probe_done(self, connection_id: str, result: ProbeResult) -> None: ...
    def token_result(self, connection_id: str, result: TokenResult) -> None: ...
    def token_expiry(self, connection_id: str, tokens: TokenSet | None) -> None: ...
    def state_changed(
        self, connection_id: str, old: State | None, new: State, since: float
    ) -> None: ...
    def forget(self, connection_id: str) -> None: ...


class StatusListener(Protocol):
    def observe_status(self, status: ConnectionStatus) -> None: ...


class Keeper:
    def __init__(
        self,
        *,
        connections: Sequence[ConnectionSettings],
        store: Store,
        session: aiohttp.ClientSession,
        clock: Clock,
        scheduler: Scheduler,
        metrics: KeeperMetrics,
        tracer: trace.Tracer,
        thresholds: health_machine.Thresholds,
        request_timeout: float,
        initial_spread: float = 30.0,
        listeners: Sequence[StatusListener] = (),
        owner: str = "",
        shared: bool = False,
        seed: int | None = None,
    ) -> None:
        self._store = store
        self._session = session
        self._clock = clock
        self._scheduler = scheduler
        self._metrics = metrics
        self._tracer = tracer
        self._thresholds = thresholds
        self._spread = initial_spread
        self._listeners = list(listeners)
        self._owner = owner
        self._shared = shared
        self._rng = random.Random(seed)  # noqa: S311 (jitter, not secrets)
        self._history: list[HistoryEntry] = []
        self._history_cap = 100_000  # entries kept in memory while the store is away
        self.store_ok = True
        self._dirty: dict[str, Connection] = {}
        now = clock.now()
        self._conns: dict[str, Connection] = {
            s.id: Connection(
                settings=s,
                info=s.info(),
                jitter=connection_jitter(s.id),
                health=health_machine.initial(now),
                owned=not shared,
                owner="" if shared else owner,
            )
            for s in connections
        }
        self.credentials = Credentials(
            session=session,
            store=store,
            clock=clock,
            tracer=tracer,
            request_timeout=request_timeout,
            on_result=self._token_answered,
            on_saved=self._token_saved,
            on_lease_lost=self._lease_lost,
        )

    def add_listener(self, listener: StatusListener) -> None:
        self._listeners.append(listener)

    # -- start-up ------------------------------------------------------------------

    async def load(self) -> None:
        """Take tokens and health from the store, then plan every connection's jobs:
        no new grant while a stored token is still valid. A replica of a shared fleet
        starts nothing here: connections come one lease at a time (`adopt`)."""
        if self._shared:
            return
        tokens = await self._store.load_all_tokens()
        healths = await self._store.load_all_health()
        self.adopt(list(self._conns), tokens, healths)

    def adopt(
        self,
        ids: Collection[str],
        tokens: Mapping[str, StoredTokens],
        healths: Mapping[str, Health],
    ) -> None:
        """Start keeping these connections, from what the store holds of them."""
        for cid in ids:
            conn = self._conns.get(cid)
            if conn is None:
                continue
            conn.stored = tokens.get(cid)
            if cid in healths:
                conn.health = healths[cid]
            conn.owned = True
            conn.owner = self._owner
            conn.retry_at = None
            self._metrics.state_changed(cid, None, conn.health.state, conn.health.since)
            self._metrics.token_expiry(cid, conn.tokens)
            self.start(conn)

    def release(self, ids: Collection[str]) -> None:
        """Stop working on these connections (another replica holds them now)."""
        for cid in ids:
            conn = self._conns.get(cid)
            if conn is None or not conn.owned:
                continue
            self.stop(conn)
            conn.owned = False
            conn.owner = ""
            self._dirty.pop(cid, None)
            self._metrics.forget(cid)

    def observe_remote(self, healths: Mapping[str, Health], owners: Mapping[str, str]) -> None:
        """The health other replicas wrote for the connections they hold."""
        for conn in self._conns.values():
            if conn.owned:
                continue
            if conn.id in healths:
                conn.health = healths[conn.id]
            conn.owner = owners.get(conn.id, "")

    def busy(self) -> frozenset[str]:
        """Connections with a token request in flight (not to be given away now)."""
        return frozenset(c.id for c in self._conns.values() if c.flight is not None)

    def owned_count(self) -> int:
        return sum(1 for c in self._conns.values() if c.owned)

    def _lease_lost(self, conn: Connection) -> None:
        log.warning("lease.lost_on_save", extra={"connection": conn.id})
        self.release([conn.id])

    def start(self, conn: Connection) -> None:
        now = self._clock.now()
        conn.refresh_job = Job(conn.id, "refresh", functools.partial(self._refresh_job, conn))
        conn.probe_job = Job(conn.id, "probe", functools.partial(self._probe_job, conn))
        spread = min(self._spread, conn.settings.probe.interval)
        first_grant = now + self._rng.random() * min(self._spread, 5.0)
        self._scheduler.schedule(conn.refresh_job, self._next_refresh(conn, now) or first_grant)
        self._scheduler.schedule(conn.probe_job, now + self._rng.random() * spread)

    def stop(self, conn: Connection) -> None:
        for job in (conn.refresh_job, conn.probe_job):
            if job is not None:
                self._scheduler.cancel(job)
        conn.refresh_job = conn.probe_job = None

    # -- the refresh job -------------------------------------------------------------

    async def _refresh_job(self, conn: Connection) -> float | None:
        token = CONNECTION.set(conn.id)
        try:
            return await self._refresh_due(conn)
        except Exception:
            # The per-connection boundary: a bug here must not stop the fleet.
            log.exception("refresh.crashed", extra={"connection": conn.id})
            return self._clock.now() + DEAD_RETRY
        finally:
            CONNECTION.reset(token)

    async def _refresh_due(self, conn: Connection) -> float | None:
        now = self._clock.now()
        planned = self._next_refresh(conn, now)
        if planned is not None and planned > now:
            return planned
        asked = conn.last_token_result
        await self.credentials.obtain(conn)
        now = self._clock.now()
        following = self._next_refresh(conn, now)
        if conn.last_token_result is asked and following is not None and following <= now:
            # No request could start (the lease is not certain yet): look again soon
            # rather than spin.
            return now + IDLE_RETRY
        return following

    def _next_refresh(self, conn: Connection, now: float) -> float | None:
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

    def _token_answered(self, conn: Connection, result: TokenResult) -> None:
        conn.last_token_result = result
        self._metrics.token_result(conn.id, result)
        now = self._clock.now()
        self._record(
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
        self._apply(conn, result)
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

    def _token_saved(self, conn: Connection) -> None:
        self._metrics.token_expiry(conn.id, conn.tokens)

    # -- the probe job ---------------------------------------------------------------

    async def _probe_job(self, conn: Connection) -> float | None:
        token = CONNECTION.set(conn.id)
        try:
            result = await self.probe_now(conn.id)
            interval = conn.settings.probe.interval
            following = self._clock.now() + interval * (0.9 + 0.2 * self._rng.random())
            if result.retry_after is not None:
                following = max(following, self._clock.now() + result.retry_after)
        except Exception:
            log.exception("probe.crashed", extra={"connection": conn.id})
            return self._clock.now() + conn.settings.probe.interval
        else:
            return following
        finally:
            CONNECTION.reset(token)

    async def probe_now(self, connection_id: str) -> ProbeResult:
        conn = self._conns[connection_id]
        with self._tracer.start_as_current_span("probe") as span:
            span.set_attribute("snowmon.connection", conn.id)
            span.set_attribute("server.address", conn.info.instance_url)
            result = await self._probe_once(conn, allow_grant=True)
            if result.reason is ProbeReason.AUTH_REJECTED:
                fresh = await self.credentials.obtain(conn)
                if fresh is not None:
                    result = await self._probe_with(conn, fresh)
                    if result.reason is ProbeReason.AUTH_REJECTED:
                        self._apply(conn, result)
                        self._apply(conn, health_machine.CredentialRefused(result.detail))
                        self._probe_done(conn, result, span)
                        return result
            self._apply(conn, result)
            self._probe_done(conn, result, span)
            return result

    def _probe_done(self, conn: Connection, result: ProbeResult, span: trace.Span) -> None:
        span.set_attribute("snowmon.outcome", result.reason.value)
        if not result.ok:
            span.set_status(trace.StatusCode.ERROR, result.reason.value)
        conn.last_probe = result
        self._metrics.probe_done(conn.id, result)
        self._record(
            HistoryEntry(
                conn.id,
                result.started_at,
                HistoryKind.PROBE,
                result.reason.value,
                result.detail,
                result.duration,
                result.status,
            )
        )

    async def _probe_once(self, conn: Connection, *, allow_grant: bool) -> ProbeResult:
        now = self._clock.now()
        tokens = conn.tokens
        if tokens is None or not usable(tokens, now):
            waiting = conn.retry_at is not None and conn.retry_at > now
            if conn.flight is not None or (allow_grant and not waiting):
                tokens = await self.credentials.obtain(conn)
            else:
                tokens = None
        if tokens is None or not usable(tokens, self._clock.now()):
            last = conn.last_token_result
            detail = f"no usable token: {last.detail}" if last and last.detail else "no token"
            if conn.settings.grant is Grant.AUTHORIZATION_CODE and conn.tokens is None:
                self._apply(
                    conn, health_machine.NotAuthorized("not authorized yet: run the connect flow")
                )
            return ProbeResult(ProbeReason.NO_TOKEN, now, 0.0, None, detail)
        return await self._probe_with(conn, tokens)

    async def _probe_with(self, conn: Connection, tokens: TokenSet) -> ProbeResult:
        p = conn.settings.probe
        target = ProbeTarget(conn.settings.instance_url, p.table, p.query, p.fields)
        deadline = asyncio.get_running_loop().time() + p.timeout
        return await probe(
            self._session, target, tokens.access_token, self._clock, deadline=deadline
        )

    # -- health ------------------------------------------------------------------------

    def _apply(self, conn: Connection, event: health_machine.Event) -> None:
        now = self._clock.now()
        before = conn.health
        conn.health, transitions = health_machine.apply(
            before, event, now, self._thresholds, conn.id
        )
        self._dirty[conn.id] = conn
        for t in transitions:
            self._transition(conn, t)
        if conn.health is not before:
            status = conn.status()
            for listener in self._listeners:
                listener.observe_status(status)

    def _transition(self, conn: Connection, t: Transition) -> None:
        self._metrics.state_changed(conn.id, t.old, t.new, t.at)
        self._record(HistoryEntry(conn.id, t.at, HistoryKind.STATE, t.new.value, t.detail))
        log.info(
            "connection.state_changed",
            extra={
                "connection": conn.id,
                "from": t.old.value,
                "to": t.new.value,
                "reason": t.reason,
                "detail": t.detail,
            },
        )

    def _record(self, entry: HistoryEntry) -> None:
        self._history.append(entry)

    # -- persistence -------------------------------------------------------------------

    async def flush(self) -> None:
        """Write changed health and new history in one batch each. What cannot be
        written stays queued for the next try: nothing is lost while the store is away."""
        dirty, self._dirty = self._dirty, {}
        history, self._history = self._history, []
        try:
            if dirty:
                await self._store.save_health([(cid, c.health) for cid, c in dirty.items()])
                dirty = {}
            if history:
                await self._store.append_history(history)
                history = []
        finally:
            for cid, conn in dirty.items():
                self._dirty.setdefault(cid, conn)
            if history:
                self._history[:0] = history[-self._history_cap :]

    async def run_flusher(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Flush every `interval` seconds until `stop`; the daemon flushes once more
        after the scheduler has drained."""
        while not stop.is_set():
            try:
                async with asyncio.timeout(interval):
                    await stop.wait()
            except TimeoutError:
                pass
            try:
                await self.flush()
            except StoreError as exc:
                self.store_ok = False
                log.warning("store.flush_failed", extra={"error": str(exc)})
            else:
                self.store_ok = True

    # -- the read and control side (the web app's FleetView) -----------------------------

    def connection(self, connection_id: str) -> Connection | None:
        return self._conns.get(connection_id)

    def connections(self) -> Sequence[Connection]:
        return list(self._conns.values())

    def statuses(self) -> Sequence[ConnectionStatus]:
        return [c.status() for c in self._conns.values()]

    def status(self, connection_id: str) -> ConnectionStatus | None:
        conn = self._conns.get(connection_id)
        return conn.status() if conn is not None else None

    async def history(self, connection_id: str, limit: int) -> list[HistoryEntry]:
        pending = [e for e in self._history if e.connection_id == connection_id]
        stored = await self._store.recent_history(connection_id, limit)
        return (pending[::-1] + stored)[:limit]

    async def refresh_now(self, connection_id: str) -> TokenResult:
        """Refresh (or grant again) now and answer what the token endpoint said.
        `KeyError` for an unknown connection."""
        conn = self._conns[connection_id]
        conn.retry_at = None
        before = conn.last_token_result
        await self.credentials.obtain(conn)
        now = self._clock.now()
        if conn.refresh_job is not None:
            self._scheduler.schedule(conn.refresh_job, self._next_refresh(conn, now) or now)
        result = conn.last_token_result
        if result is None or result is before:
            # No request was possible: an authorization_code connection without a
            # refresh token needs the connect flow.
            return TokenResult(
                Grant.REFRESH_TOKEN,
                None,
                TokenFailure.GRANT_NOT_ALLOWED,
                None,
                "no refresh token: re-authorize through the connect flow",
                None,
                now,
            )
        return result

    def authorize_target(self, connection_id: str) -> AuthorizeTarget | None:
        conn = self._conns.get(connection_id)
        if conn is None or conn.settings.grant is not Grant.AUTHORIZATION_CODE:
            return None
        s = conn.settings
        return AuthorizeTarget(conn.id, s.instance_url, s.client_id, s.scopes)

    async def complete_authorization(
        self, connection_id: str, code: Secret, redirect_uri: str, code_verifier: Secret | None
    ) -> TokenResult:
        conn = self._conns[connection_id]
        result = await self.credentials.exchange_code(conn, code, redirect_uri, code_verifier)
        if result.ok:
            now = self._clock.now()
            if conn.refresh_job is not None:
                self._scheduler.schedule(conn.refresh_job, self._next_refresh(conn, now) or now)
            if conn.probe_job is not None:
                self._scheduler.schedule(conn.probe_job, now)
        return result

    def on_every(self, fn: Callable[[Connection], None]) -> None:
        for conn in self._conns.values():
            fn(conn)
