"""Alerting: health updates in, Slack messages out, and monitoring never waits for Slack.

`observe()` is called on every health update: it runs the pure rules, updates the alert
records in memory and queues what must be said; it never awaits. `run()` owns the rest:
it writes the ledger (records and outbox) in crash-safe order, delivers queued jobs one
at a time in order (a job that fails for a reason that can pass blocks the queue with
backoff: Slack down or rate limiting hits every message alike), re-evaluates connections
when time alone changes things (reminders, expiry horizons, maintenance ends), and
flushes alert groups. Notifications that do not fit in the queue are dropped and counted,
and the record stays as it was, so a later evaluation tries again.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Final

from opentelemetry import trace

from monitor.clock import Clock
from monitor.errors import StoreError
from monitor.model import AlertRecord, ConnectionStatus
from monitor.notify.catalog import SEVERITY_RANK, Action, AlertSubject, Severity
from monitor.notify.delivery import Courier, LogLimiter
from monitor.notify.groups import Group
from monitor.notify.ledger import Ledger
from monitor.notify.outbox import AlertKey, Job, JobKind
from monitor.notify.routing import Links, Router
from monitor.notify.rules import AlertPolicy, Change, Grouping, evaluate, group_reminder_due
from monitor.notify.slack import Sender
from monitor.store import Store

log = logging.getLogger("snowmon.notify")

DROP_RETRY: Final = 30.0  # clock seconds before a dropped notification is tried again
MIN_WAIT: Final = 0.05  # real seconds: the loop never spins, whatever the clock


class Alerting:
    def __init__(
        self,
        *,
        policy: AlertPolicy,
        router: Router,
        store: Store,
        sender: Sender | None,
        clock: Clock,
        links: Links,
        on_result: Callable[[str], None] | None = None,
        queue_size: int = 1000,
        tick_interval: float = 5.0,
        call_timeout: float = 10.0,
        store_timeout: float = 5.0,
        stop_grace: float = 1.0,
        tracer: trace.Tracer | None = None,
        seed: int | None = None,
    ) -> None:
        self._policy = policy
        self._router = router
        self._sender = sender
        self._clock = clock
        self._on_result = on_result
        self._queue_size = queue_size
        self._tick_interval = tick_interval
        self._store_timeout = store_timeout
        self._limiter = LogLimiter(clock)
        self._ledger = Ledger(store, policy)
        self._subjects: dict[str, AlertSubject] = {}
        self._courier = (
            Courier(
                ledger=self._ledger,
                sender=sender,
                subjects=self._subjects,
                policy=policy,
                links=links,
                clock=clock,
                count=self._count,
                limiter=self._limiter,
                tracer=tracer or trace.get_tracer("snowmon.notify"),
                call_timeout=call_timeout,
                stop_grace=stop_grace,
                rng=random.Random(seed),  # noqa: S311 (backoff jitter, not secrets)
            )
            if sender is not None
            else None
        )
        self._due: list[tuple[float, str]] = []
        self._due_at: dict[str, float] = {}
        self._released: set[str] = set()  # given away, records kept for queued jobs
        self._started = False
        self._wake = asyncio.Event()
        self._settle = asyncio.Condition()
        self._cycles = 0
        self._idle_cycle = 0

    # -- what the daemon and the status API call ---------------------------------------

    async def start(self, configured: Collection[str] | None = None) -> None:
        """Load alert records and the outbox; raises `StoreError` when the store fails.

        `configured`: the connection ids of the configuration. A firing alert of a
        connection no longer configured is never evaluated again, so it is named in the
        log (its Slack message stays as last sent) and left out of `firing()`; the store
        keeps its record, in case a replica with an older configuration still keeps it."""
        await self._ledger.load()
        if configured is not None:
            known = set(configured)
            gone = [r for r in self._ledger.all_records() if r.connection_id not in known]
            for record in gone:
                if record.resolved_at is None:
                    log.warning(
                        "alert.connection_removed",
                        extra={
                            "connection": record.connection_id,
                            "alert": record.alert,
                            "severity": record.severity,
                            "firing_since": record.firing_since,
                            "channel": record.channel,
                            "slack_message": bool(record.message_ts),
                        },
                    )
            self._ledger.forget({r.connection_id for r in gone})
        self._started = True
        now = self._clock.now()
        for connection_id in list(self._subjects):
            self._evaluate(connection_id, now)

    def observe(self, subject: AlertSubject) -> None:
        connection_id = subject.info.id
        self._subjects[connection_id] = subject
        if self._started:
            self._evaluate(connection_id, self._clock.now())

    def observe_status(self, status: ConnectionStatus) -> None:
        """The keeper's `StatusListener`."""
        self.observe(AlertSubject.from_status(status))

    # -- a shared fleet: connections change hands (the keeper calls these) --------------

    async def adopting(self, connection_ids: Collection[str]) -> None:
        """This replica is about to keep these connections: read their alert records as
        the store holds them now, so the rules continue what the previous owner sent
        (no second fire; a resolution edits its message). Raises `StoreError`: the keeper
        then does not adopt them this time."""
        if not connection_ids:
            return
        try:
            async with asyncio.timeout(self._store_timeout):
                await self._ledger.adopt(connection_ids)
        except TimeoutError:
            raise StoreError("reading the alerts of adopted connections timed out") from None
        self._released.difference_update(connection_ids)

    def released(self, connection_ids: Collection[str]) -> None:
        """Another replica keeps these connections now: stop evaluating them and forget
        their records here (the store keeps them for the next owner). A notification
        already queued may still be delivered; its record goes once it is done."""
        for connection_id in connection_ids:
            self._subjects.pop(connection_id, None)
            self._due_at.pop(connection_id, None)
            self._released.add(connection_id)
        self._prune_released()
        self._wake.set()  # write what is pending for them soon

    def _prune_released(self) -> None:
        if not self._released:
            return
        waiting = {j.alert_key[0] for j in self._ledger.queue if j.alert_key is not None}
        self._ledger.forget(self._released - waiting)
        self._released &= waiting

    def firing(self) -> list[AlertRecord]:
        rows = [r for r in self._ledger.all_records() if r.resolved_at is None]
        return sorted(rows, key=lambda r: (_rank(r.severity), r.firing_since, r.connection_id))

    @property
    def queued(self) -> int:
        return len(self._ledger.queue)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver and tick until `stop`; what is not delivered stays in the outbox."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._relay(stop))
            await self._loop(stop)
        try:
            async with asyncio.timeout(self._store_timeout):
                await self._ledger.persist()
        except (StoreError, TimeoutError) as exc:
            log.warning("slack.persist_failed", extra={"error": str(exc), "at": "stop"})

    async def settled(self) -> None:
        """Wait for a full cycle of the loop that started after this call and found
        nothing left to do now: everything observed so far is evaluated and written, and
        delivered or waiting for a retry. For tests and the demo."""
        target = self._cycles + 1
        self._wake.set()
        async with self._settle:
            await self._settle.wait_for(lambda: self._idle_cycle >= target)

    # -- deciding ----------------------------------------------------------------------

    def _evaluate(self, connection_id: str, now: float) -> None:
        subject = self._subjects[connection_id]
        decision = evaluate(self._ledger.of(connection_id), subject, now, self._policy)
        next_check = decision.next_check
        for change in decision.changes:
            if not self._apply(change, subject, now):
                next_check = min(next_check or now + DROP_RETRY, now + DROP_RETRY)
        self._schedule(connection_id, next_check)

    def _apply(self, change: Change, subject: AlertSubject, now: float) -> bool:
        key = (subject.info.id, change.alert.value)
        note, record = change.notification, change.record
        if change.muted is not None:
            self._count("suppressed")
        if note is None or record is None:
            self._ledger.write(key, record)
            return True
        if self._sender is None:
            self._count("suppressed")
            self._ledger.write(key, None if note.action is Action.RESOLVE else record)
            return True
        if note.action is Action.FIRE:
            return self._fire(key, record, change, subject, now)
        old = self._ledger.get(key)
        group = self._ledger.groups.get(old.extra.get("group", "")) if old else None
        if group is not None:
            self._group_event(group, note.action, now)
            self._ledger.write(key, None if note.action is Action.RESOLVE else record)
            return True
        if note.action is Action.RESOLVE and old is not None and self._cancel_unsent(key, old):
            self._ledger.write(key, None)  # it never reached Slack: nothing to take back
            return True
        channel = old.channel if old is not None else self._router.channel_for(subject.info)
        return self._admit(key, record, change, channel)

    def _fire(
        self, key: AlertKey, record: AlertRecord, change: Change, subject: AlertSubject, now: float
    ) -> bool:
        channel = self._router.channel_for(subject.info)
        record = replace(record, channel=channel)
        groups = self._ledger.groups
        if groups.mode(channel, now) is Grouping.SINGLE:
            if not self._admit(key, record, change, channel):
                return False
            groups.note_fire(channel, now)
            return True
        group = groups.join(channel, now, key, record.severity, self._ledger.keys.next())
        self._ledger.write(key, replace(record, extra={**record.extra, "group": group.id}))
        self._ledger.write_group(group)
        self._wake.set()
        return True

    def _admit(self, key: AlertKey, record: AlertRecord, change: Change, channel: str) -> bool:
        if len(self._ledger.queue) >= self._queue_size:
            self._count("dropped")
            self._limiter.warning("slack.queue_full", queue_size=self._queue_size)
            return False
        stored = self._ledger.write(key, record)
        key_ = self._ledger.keys.next()
        job = Job(key_, JobKind.ALERT, channel, change.notification, stored)
        self._ledger.enqueue(job)
        self._wake.set()
        return True

    def _cancel_unsent(self, key: AlertKey, old: AlertRecord) -> bool:
        """Drop the queued jobs of an alert whose first message was never sent."""
        if old.message_ts:
            return False
        jobs = [
            j
            for j in self._ledger.queue
            if j.alert_key == key
            and j.notification is not None
            and j.notification.firing_since == old.firing_since
        ]
        fire_waiting = any(j.notification and j.notification.action is Action.FIRE for j in jobs)
        inflight = self._courier.inflight if self._courier else None
        if not fire_waiting or inflight in jobs:
            return False
        for job in jobs:
            self._ledger.finish(job)
        return True

    def _group_event(self, group: Group, action: Action, now: float) -> None:
        if action is Action.REMIND:
            if not group_reminder_due(group.reminded_at, now, self._policy):
                return  # another member reminded for the group moments ago
            group.reply = group.reply or Action.REMIND
            group.reminded_at = now
        group.dirty = True
        self._ledger.write_group(group)
        self._wake.set()

    def _schedule(self, connection_id: str, at: float | None) -> None:
        if at is None:
            self._due_at.pop(connection_id, None)
            return
        if self._due_at.get(connection_id) == at:
            return
        self._due_at[connection_id] = at
        heapq.heappush(self._due, (at, connection_id))
        if len(self._due) > 2 * len(self._due_at) + 1024:
            self._due = [(t, c) for c, t in self._due_at.items()]
            heapq.heapify(self._due)

    def _due_now(self, now: float) -> None:
        while self._due and self._due[0][0] <= now:
            at, connection_id = heapq.heappop(self._due)
            if self._due_at.get(connection_id) != at:
                continue  # superseded by a later schedule
            del self._due_at[connection_id]
            if connection_id in self._subjects:
                self._evaluate(connection_id, now)
        self._flush_groups(now)

    def _flush_groups(self, now: float) -> None:
        threads = self._sender is not None and self._sender.threads
        for group in self._ledger.groups:
            closed = not group.is_open(now, self._policy)
            if closed and not group.done and not self._any_firing(group):
                if not group.posted and not group.queued:
                    self._ledger.drop_group(group)  # all over before anyone saw it
                    continue
                group.done = group.dirty = True
                group.reply = Action.RESOLVE if self._policy.send_resolved else None
                self._ledger.write_group(group)
            if group.queued or not group.dirty:
                continue
            if group.done and not self._policy.send_resolved:
                self._ledger.drop_group(group)
                continue
            if not threads and (not closed or (group.posted and group.reply is None)):
                # A webhook cannot edit: it posts a group once complete, then only news.
                group.dirty = group.posted is False
                continue
            job = Job(self._ledger.keys.next(), JobKind.GROUP, group.channel, group_id=group.id)
            job.reply, group.reply = group.reply, None
            group.queued, group.dirty = True, False
            self._ledger.enqueue(job)

    def _any_firing(self, group: Group) -> bool:
        for key in group.members:
            record = self._ledger.get(key)
            if record is not None and record.resolved_at is None:
                return True
        return False

    # -- the loop ----------------------------------------------------------------------

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            self._cycles += 1
            cycle = self._cycles
            now = self._clock.now()
            self._prune_released()
            self._due_now(now)
            await self._persist()
            if stop.is_set():
                break
            courier = self._courier
            if courier is not None and self._ledger.queue and now >= courier.retry_at:
                await courier.deliver_head(stop)
                continue
            async with self._settle:
                self._idle_cycle = cycle
                self._settle.notify_all()
            await self._sleep(now)

    async def _sleep(self, now: float) -> None:
        until = now + self._tick_interval
        if self._courier is not None and self._ledger.queue:
            until = min(until, max(self._courier.retry_at, now))
        if self._due:
            until = min(until, self._due[0][0])
        delay = max(MIN_WAIT, self._clock.real_seconds(max(0.0, until - now)))
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _persist(self) -> None:
        if not self._ledger.pending_writes:
            return
        try:
            async with asyncio.timeout(self._store_timeout):
                await self._ledger.persist()
        except (StoreError, TimeoutError) as exc:
            self._limiter.warning("slack.persist_failed", error=str(exc) or type(exc).__name__)

    def _count(self, result: str) -> None:
        if self._on_result is not None:
            self._on_result(result)


def _rank(severity: str) -> int:
    try:
        return SEVERITY_RANK[Severity(severity)]
    except ValueError:
        return len(SEVERITY_RANK)
