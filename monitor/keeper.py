"""The keeper: the fleet of connections this process keeps alive, and its one face.

It decides which connections this process works on (all of them, or, in a shared
fleet, those whose lease it holds: `adopt`, `release`, `observe_remote`), starts and stops
their two scheduler jobs, and answers the web app's reads and "do it now" controls
(`FleetView`). The work itself is done by the parts it composes:
- `refresher.Refresher`: the refresh job, on the credential calendar, with backoff;
- `prober.Prober`: the probe job, one Table API read with a usable token;
- `health_log.HealthLog`: results through the pure `health` state machine, transitions to
  metrics, history and the listeners (alerting), health and history to the store in
  batches;
- `credentials.Credentials`: every token request, single-flight, persisted first.

It knows nothing of Slack, HTTP routes or SQL.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

import aiohttp
from opentelemetry import trace

from monitor import health as health_machine
from monitor.clock import Clock
from monitor.connection import Connection, ConnectionSettings, TokenTimes
from monitor.credentials import Credentials
from monitor.health_log import HealthLog, HealthMetrics, StatusListener
from monitor.model import (
    AuthorizeTarget,
    ConnectionStatus,
    Grant,
    Health,
    HistoryEntry,
    ProbeResult,
    StoredTokens,
    TokenFailure,
    TokenResult,
    TokenSet,
)
from monitor.prober import ProbeMetrics, Prober
from monitor.refresher import (
    DEAD_RETRY,
    EVIDENCE_RETRY,
    HIBERNATION_RETRY,
    IDLE_RETRY,
    Refresher,
    RefreshMetrics,
)
from monitor.schedule import Job, Scheduler
from monitor.secret import Secret
from monitor.store import Store
from monitor.timing import connection_jitter, first_probe_at, keeps_probe_phase

log = logging.getLogger("snowmon.keeper")

__all__ = [
    "DEAD_RETRY",
    "EVIDENCE_RETRY",
    "HIBERNATION_RETRY",
    "IDLE_RETRY",
    "Keeper",
    "KeeperListener",
    "KeeperMetrics",
    "StatusListener",
]


class KeeperMetrics(HealthMetrics, ProbeMetrics, RefreshMetrics, Protocol):
    def token_expiry(self, connection_id: str, tokens: TokenSet | None) -> None: ...
    def forget(self, connection_id: str) -> None: ...


class KeeperListener(StatusListener, Protocol):
    """A status listener that also follows which connections this replica keeps
    (alerting: it keeps alert state only for those)."""

    async def adopting(self, connection_ids: Collection[str]) -> None:
        """Before `Keeper.adopt` from a lease round; raises `StoreError` to put it off."""
        ...

    def released(self, connection_ids: Collection[str]) -> None: ...


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
        self._clock = clock
        self._scheduler = scheduler
        self._metrics = metrics
        self._spread = initial_spread
        self._owner = owner
        self._shared = shared
        # One generator for every jitter (first runs, probe intervals, backoff), so a
        # seed replays a whole fleet.
        self._rng = random.Random(seed)  # noqa: S311 (jitter, not secrets)
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
        self._health = HealthLog(
            store=store, clock=clock, metrics=metrics, thresholds=thresholds, listeners=listeners
        )
        self._keeper_listeners: list[KeeperListener] = []
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
        self._refresher = Refresher(
            credentials=self.credentials,
            clock=clock,
            metrics=metrics,
            health=self._health,
            rng=self._rng,
        )
        self._prober = Prober(
            session=session,
            credentials=self.credentials,
            clock=clock,
            tracer=tracer,
            metrics=metrics,
            health=self._health,
            rng=self._rng,
        )

    def add_listener(self, listener: KeeperListener) -> None:
        self._health.add_listener(listener)
        self._keeper_listeners.append(listener)

    @property
    def store_ok(self) -> bool:
        """False while the last batch of health and history could not be written."""
        return self._health.store_ok

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

    # -- which connections this process keeps (ownership.py drives these) --------------

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

    async def adopting(self, ids: Collection[str]) -> None:
        """Before `adopt` in a lease round: the listeners read what they keep of these
        connections (alerting: their alert records). Raises `StoreError`: adopt nothing
        now."""
        for listener in self._keeper_listeners:
            await listener.adopting(ids)

    def release(self, ids: Collection[str]) -> None:
        """Stop working on these connections (another replica holds them now)."""
        released = []
        for cid in ids:
            conn = self._conns.get(cid)
            if conn is None or not conn.owned:
                continue
            self.stop(conn)
            conn.owned = False
            conn.owner = ""
            self._health.forget(cid)
            self._metrics.forget(cid)
            released.append(cid)
        if released:
            for listener in self._keeper_listeners:
                listener.released(released)

    def observe_remote(
        self,
        healths: Mapping[str, Health],
        owners: Mapping[str, str],
        token_times: Mapping[str, TokenTimes] | None = None,
    ) -> None:
        """The health, holder and token expiry times other replicas wrote for the
        connections they hold."""
        for conn in self._conns.values():
            if conn.owned:
                continue
            if conn.id in healths:
                conn.health = healths[conn.id]
            conn.owner = owners.get(conn.id, "")
            if token_times is not None:
                conn.remote_times = token_times.get(conn.id)

    def busy(self) -> frozenset[str]:
        """Connections with a token request in flight (not to be given away now)."""
        return frozenset(c.id for c in self._conns.values() if c.flight is not None)

    def _lease_lost(self, conn: Connection) -> None:
        log.warning("lease.lost_on_save", extra={"connection": conn.id})
        self.release([conn.id])

    def start(self, conn: Connection) -> None:
        now = self._clock.now()
        conn.refresh_job = Job(conn.id, "refresh", functools.partial(self._refresher.run, conn))
        conn.probe_job = Job(conn.id, "probe", functools.partial(self._prober.run, conn))
        first_grant = now + self._rng.random() * min(self._spread, 5.0)
        refresh = self._next_refresh(conn, now)
        if refresh is None:
            self._scheduler.schedule(conn.refresh_job, first_grant)
        elif refresh <= now:
            # A grant to make, or a stored token overdue for refresh: a first run, as soon
            # as a slot is free (see `Scheduler.schedule_first`).
            self._scheduler.schedule_first(conn.refresh_job, refresh)
        else:
            self._scheduler.schedule(conn.refresh_job, refresh)
        # A healthy connection restored from the store keeps its probe phase; any other
        # is probed within the initial spread (see `timing.first_probe_at`), as a first
        # run: a fleet larger than the process can probe in the spread waits for slots.
        interval = conn.settings.probe.interval
        first_probe = first_probe_at(
            conn.health, interval=interval, now=now, spread=self._spread, draw=self._rng.random()
        )
        if keeps_probe_phase(conn.health, interval=interval, now=now):
            self._scheduler.schedule(conn.probe_job, first_probe)
        else:
            self._scheduler.schedule_first(conn.probe_job, first_probe)

    def stop(self, conn: Connection) -> None:
        for job in (conn.refresh_job, conn.probe_job):
            if job is not None:
                self._scheduler.cancel(job)
        conn.refresh_job = conn.probe_job = None

    def _next_refresh(self, conn: Connection, now: float) -> float | None:
        return self._refresher.next_refresh(conn, now)

    # -- what Credentials reports back -------------------------------------------------

    def _token_answered(self, conn: Connection, result: TokenResult) -> None:
        # Bound late: Credentials is built before the refresher that plans around it.
        self._refresher.answered(conn, result)

    def _token_saved(self, conn: Connection) -> None:
        self._metrics.token_expiry(conn.id, conn.tokens)

    # -- persistence (the health log's batches) ------------------------------------------

    async def flush(self) -> None:
        """Write changed health and new history in one batch each; what cannot be written
        stays queued for the next try."""
        await self._health.flush()

    async def run_flusher(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Flush every `interval` seconds until `stop`; the daemon flushes once more
        after the scheduler has drained."""
        await self._health.run_flusher(stop, interval)

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
        return await self._health.history(connection_id, limit)

    async def probe_now(self, connection_id: str) -> ProbeResult:
        """Probe now and answer the result; `KeyError` for an unknown connection."""
        return await self._prober.probe(self._conns[connection_id])

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

    def holds(self, connection_id: str) -> bool:
        conn = self._conns.get(connection_id)
        return conn is not None and conn.owned

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
