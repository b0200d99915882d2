"""Delivery: one queued job at a time, from the ledger to Slack, and what came of it.

The courier takes the job at the head of the queue and sends it: an alert's first post,
or for a bot the edit of the original message plus a thread reply; a group's post or
edit. What Slack answers is written back to the ledger (message ts, channel id, the
`delivered` mark). A failure that can pass (rate limit, outage, timeout) leaves the job
at the head and sets `retry_at` with exponential backoff and jitter, never sooner than
Slack's Retry-After; a refusal for good (or a bug in one message) is counted and the job
is dropped, so it cannot block the queue or come back after every restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, TypeVar

from opentelemetry import trace

from monitor.clock import Clock
from monitor.notify.catalog import Action, AlertName, AlertSubject, Severity
from monitor.notify.groups import Group
from monitor.notify.ledger import Ledger
from monitor.notify.outbox import Job, JobKind
from monitor.notify.render import (
    GroupMember,
    GroupView,
    render,
    render_group,
    render_group_reply,
    render_reply,
)
from monitor.notify.routing import Links
from monitor.notify.rules import AlertPolicy
from monitor.notify.slack import Sender, SlackError

log = logging.getLogger("snowmon.notify")

BACKOFF_BASE: Final = 2.0
BACKOFF_MAX: Final = 300.0
LOG_EVERY: Final = 60.0  # clock seconds between two log lines of one kind of trouble

T = TypeVar("T")


class LogLimiter:
    """One line per kind of trouble per `LOG_EVERY`, with how often it was held back:
    Slack being down for an hour is one line a minute, not one per message."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._marks: dict[str, tuple[float, int]] = {}

    def warning(self, event: str, **fields: object) -> None:
        now = self._clock.now()
        last, skipped = self._marks.get(event, (float("-inf"), 0))
        if now - last < LOG_EVERY:
            self._marks[event] = (last, skipped + 1)
            return
        self._marks[event] = (now, 0)
        log.warning(event, extra={**fields, "repeats": skipped})


def group_firing(
    ledger: Ledger, subjects: Mapping[str, AlertSubject], group: Group
) -> list[GroupMember]:
    """The members of `group` still firing, as its message lists them."""
    members = []
    for key in group.members:
        record = ledger.get(key)
        if record is None or record.resolved_at is not None:
            continue
        subject = subjects.get(key[0])
        customer = subject.info.labels.get("customer", "") if subject else ""
        members.append(
            GroupMember(
                key[0],
                AlertName(record.alert),
                Severity(record.severity),
                record.firing_since,
                customer,
            )
        )
    return members


class Courier:
    def __init__(
        self,
        *,
        ledger: Ledger,
        sender: Sender,
        subjects: Mapping[str, AlertSubject],
        policy: AlertPolicy,
        links: Links,
        clock: Clock,
        count: Callable[[str], None],
        limiter: LogLimiter,
        tracer: trace.Tracer,
        call_timeout: float,
        stop_grace: float,
        rng: random.Random,
    ) -> None:
        self._ledger = ledger
        self._sender = sender
        self._subjects = subjects
        self._policy = policy
        self._links = links
        self._clock = clock
        self._count = count
        self._limiter = limiter
        self._tracer = tracer
        self._call_timeout = call_timeout
        self._stop_grace = stop_grace
        self._rng = rng
        self._attempts = 0
        self.retry_at = 0.0  # clock time before which the head of the queue waits
        self.inflight: Job | None = None

    async def deliver_head(self, stop: asyncio.Event) -> str:
        """Deliver the head of the queue; answers sent, failed, retry or stopped."""
        job = self._ledger.queue[0]
        note = job.notification
        with self._tracer.start_as_current_span("notify.slack") as span:
            if note is not None:
                span.set_attribute("snowmon.connection", note.connection_id)
                span.set_attribute("snowmon.alert", note.alert.value)
                span.set_attribute("snowmon.action", note.action.value)
            outcome = await self._attempt(job, stop)
            span.set_attribute("snowmon.outcome", outcome)
            return outcome

    async def _attempt(self, job: Job, stop: asyncio.Event) -> str:
        self.inflight = job
        # Both tasks are awaited (or cancelled and awaited) before this returns.
        task = asyncio.create_task(self._deliver(job))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                await asyncio.wait((task,), timeout=self._stop_grace)
        finally:
            self.inflight = None
            stopped.cancel()
            task.cancel()
            await asyncio.gather(task, stopped, return_exceptions=True)
        if task.cancelled():
            return "stopped"  # it stays in the outbox for the next start
        error = task.exception()
        if isinstance(error, SlackError) and error.retry:
            self._attempts += 1
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** (self._attempts - 1))
            delay *= 0.5 + self._rng.random() / 2
            self.retry_at = self._clock.now() + max(delay, error.retry_after or 0.0)
            self._limiter.warning("slack.retrying", code=error.code, attempts=self._attempts)
            return "retry"
        self._attempts, self.retry_at = 0, 0.0
        outcome = "sent"
        if error is None:
            note = job.notification
            action = note.action if note is not None else job.reply
            log.info(
                "slack.sent",
                extra={
                    "job": job.key,
                    "kind": job.kind.value,
                    "channel": job.channel,
                    "connection": note.connection_id if note is not None else None,
                    "alert": note.alert.value if note is not None else None,
                    "action": action.value if action is not None else None,
                },
            )
        else:
            outcome = "failed"
            fields = {"job": job.key, "kind": job.kind.value, "channel": job.channel}
            if isinstance(error, SlackError):
                log.warning("slack.failed", extra={**fields, "code": error.code})
            else:
                # The per-job boundary: a bug in one message must not stop alerting or
                # come back after every restart from the outbox.
                log.error("slack.job_crashed", extra=fields, exc_info=error)
        self._count(outcome)
        self._finish(job)
        return outcome

    async def _deliver(self, job: Job) -> None:
        if job.kind is JobKind.GROUP:
            await self._deliver_group(job)
        else:
            await self._deliver_alert(job)

    async def _deliver_alert(self, job: Job) -> None:
        sender, note, key = self._sender, job.notification, job.alert_key
        if note is None or key is None:
            return
        record = self._ledger.get(key)
        if record is None or record.firing_since != note.firing_since:
            return  # a later incarnation took its place
        message = render(note, self._links)
        ts, channel = record.message_ts, record.extra.get("channel_id") or job.channel
        if not sender.threads or note.action is Action.FIRE or not ts:
            if note.action is Action.RESOLVE and sender.threads and not ts:
                return  # the alert never reached Slack: nothing to resolve
            posted = await self._call(sender.send(job.channel, message))
            if sender.threads:
                self._ledger.mark(
                    key, note.firing_since, message_ts=posted.ts, channel_id=posted.channel
                )
            return
        if note.action in (Action.RESOLVE, Action.ESCALATE):
            try:
                await self._call(sender.update(channel, ts, message))
            except SlackError as exc:
                if not exc.gone:
                    raise
                # Someone deleted the original: say it again where people look.
                posted = await self._call(sender.send(job.channel, message))
                ts, channel = posted.ts, posted.channel
                self._ledger.mark(key, note.firing_since, message_ts=ts, channel_id=channel)
        await self._call(sender.reply(channel, ts, render_reply(note)))

    async def _deliver_group(self, job: Job) -> None:
        sender, group = self._sender, self._ledger.groups.get(job.group_id)
        if group is None:
            return
        view = GroupView(
            channel=group.channel,
            opened_at=group.opened_at,
            at=self._clock.now(),
            firing=group_firing(self._ledger, self._subjects, group),
            total=group.total,
            threshold=self._policy.group_threshold,
            window=self._policy.group_window,
        )
        message = render_group(view, self._links)
        if not sender.threads:
            await self._call(sender.send(group.channel, message))
            group.posted = True
            return
        shown = json.dumps(message, sort_keys=True)
        if group.message_ts and shown != group.shown:
            try:
                await self._call(sender.update(group.channel_id, group.message_ts, message))
            except SlackError as exc:
                if not exc.gone:
                    raise
                group.message_ts = ""
        if not group.message_ts:
            posted = await self._call(sender.send(group.channel, message))
            group.message_ts, group.channel_id, group.posted = posted.ts, posted.channel, True
            self._ledger.write_group(group)
        group.shown = shown
        if job.reply is not None:
            reply = render_group_reply(view, job.reply)
            await self._call(sender.reply(group.channel_id, group.message_ts, reply))

    def _finish(self, job: Job) -> None:
        note, key = job.notification, job.alert_key
        if note is not None and key is not None:
            record = self._ledger.get(key)
            if record is not None and record.firing_since == note.firing_since:
                if note.action is Action.RESOLVE:
                    self._ledger.write(key, None)
                else:
                    self._ledger.mark(key, note.firing_since, delivered=job.key)
        group = self._ledger.groups.get(job.group_id)
        if group is not None:
            group.queued = False
            if group.done:
                self._ledger.drop_group(group)
            else:
                self._ledger.write_group(group)
        self._ledger.finish(job)

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._call_timeout):
                return await call
        except TimeoutError:
            raise SlackError("timeout", retry=True) from None
