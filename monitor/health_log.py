"""The health log: what happens to each connection's health, and getting it on record.

Every probe result, token answer and credential verdict goes through the pure `health`
state machine here. Transitions go to metrics, the log and the history buffer; a changed
snapshot goes to the status listeners (alerting). Changed health and new history reach
the store in batches (`flush`, `run_flusher`); what cannot be written stays queued, so
nothing is lost while the store is away, and the web's history shows it meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from monitor import health as health_machine
from monitor.clock import Clock
from monitor.connection import Connection
from monitor.errors import StoreError
from monitor.model import ConnectionStatus, HistoryEntry, HistoryKind, State, Transition
from monitor.store import Store

# The keeper's logger: these lines were always the keeper's, and dashboards know them so.
log = logging.getLogger("snowmon.keeper")


class HealthMetrics(Protocol):
    def state_changed(
        self, connection_id: str, old: State | None, new: State, since: float
    ) -> None: ...


class StatusListener(Protocol):
    def observe_status(self, status: ConnectionStatus) -> None: ...


class HealthLog:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        metrics: HealthMetrics,
        thresholds: health_machine.Thresholds,
        listeners: Sequence[StatusListener] = (),
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._thresholds = thresholds
        self._listeners = list(listeners)
        self._history: list[HistoryEntry] = []
        self._history_cap = 100_000  # entries kept in memory while the store is away
        self._dirty: dict[str, Connection] = {}
        self.store_ok = True

    def add_listener(self, listener: StatusListener) -> None:
        self._listeners.append(listener)

    # -- health ------------------------------------------------------------------------

    def apply(self, conn: Connection, event: health_machine.Event) -> None:
        if not conn.owned:
            # Released while a probe was in flight: the health is the new owner's to
            # write now (it arrives through `Keeper.observe_remote`).
            return
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
        self.record(HistoryEntry(conn.id, t.at, HistoryKind.STATE, t.new.value, t.detail))
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

    def record(self, entry: HistoryEntry) -> None:
        self._history.append(entry)

    def forget(self, connection_id: str) -> None:
        """Drop the unsaved health of a connection another replica keeps now: its
        snapshot is that replica's to write."""
        self._dirty.pop(connection_id, None)

    async def history(self, connection_id: str, limit: int) -> list[HistoryEntry]:
        """The newest `limit` entries, newest first: the unsaved ones, then the store's."""
        pending = [e for e in self._history if e.connection_id == connection_id]
        stored = await self._store.recent_history(connection_id, limit)
        return (pending[::-1] + stored)[:limit]

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
