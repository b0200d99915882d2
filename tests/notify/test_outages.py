"""Slack rate limiting, down, slow or refusing: monitoring never waits, nothing is lost
while Slack recovers, and what cannot fit is counted (and logged once a minute).
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from monitor.clock import ManualClock
from monitor.notify.rules import AlertPolicy
from monitor.notify.slack import BotSender
from monitor.store.memory import MemoryStore
from tests.fakes.slack_api import FakeSlack
from tests.notify.harness import make, running
from tests.notify.subjects import T0, expired, info

NO_GROUPS = AlertPolicy(group_window=0.0)
BACKOFF_MAX = 300.0


async def test_rate_limit_backs_off_as_long_as_slack_asks(bot: BotSender, slack: FakeSlack) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    slack.fail_next(status=429, error="ratelimited", retry_after=120)
    run = make(store, bot, clock)
    async with running(run):
        run.alerting.observe(expired())
        await run.settle()
        await run.advance(119)
        assert [c.status for c in slack.calls] == [429]
        assert run.alerting.queued == 1
        await run.advance(1)
    assert [c.status for c in slack.calls] == [429, 200]
    assert run.results == {"sent": 1}


async def test_outage_backoff_grows_and_then_delivers(bot: BotSender, slack: FakeSlack) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    slack.outage = True
    run = make(store, bot, clock)
    async with running(run):
        run.alerting.observe(expired())
        await run.settle()
        for _ in range(5):
            await run.advance(BACKOFF_MAX)
        attempts = len(slack.calls)
        assert attempts == 6
        slack.outage = False
        await run.advance(BACKOFF_MAX)
    assert [c.status for c in slack.calls] == [503] * 6 + [200]


BACKOFF_MAX = 300.0


async def test_slow_slack_times_out_and_is_retried(slack: FakeSlack, bot: BotSender) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    slack.fail_next(delay=1.0)
    run = make(store, bot, clock, call_timeout=0.2)
    async with running(run):
        run.alerting.observe(expired())
        await run.settle()
        assert (run.alerting.queued, run.results) == (1, {})  # timed out, waiting to retry
        await run.advance(BACKOFF_MAX)
        assert (run.alerting.queued, run.results) == (0, {"sent": 1})
        assert [c.status for c in slack.calls] == [200]  # the retry; the slow one hangs on
    # (Slack may still post the slow one when it answers: delivery is at least once.)


async def test_full_queue_drops_counts_and_logs_once(
    bot: BotSender, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    slack.outage = True
    run = make(store, bot, clock, queue_size=2, policy=NO_GROUPS)
    caplog.set_level(logging.WARNING, logger="snowmon.notify")
    async with running(run):
        for i in range(5):
            run.alerting.observe(expired(conn=info(f"c{i}")))
        await run.settle()
        assert run.results["dropped"] == 3
        assert [r.connection_id for r in run.alerting.firing()] == ["c0", "c1"]
        full = [r for r in caplog.records if r.getMessage() == "slack.queue_full"]
        assert len(full) == 1
        slack.outage = False
        await run.advance(BACKOFF_MAX)  # the queue drains ...
        await run.advance(30)  # ... and the dropped ones come back, two at a time
        await run.advance(30)
    assert sorted(r.connection_id for r in run.alerting.firing()) == ["c0", "c1", "c2", "c3", "c4"]
    assert len(slack.messages) == 5


async def test_observe_never_waits_for_slack(slack: FakeSlack, bot: BotSender) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    slack.fail_next(delay=2.0)
    run = make(store, bot, clock, policy=NO_GROUPS)
    async with running(run):
        run.alerting.observe(expired(conn=info("first")))
        await asyncio.sleep(0.1)  # the first call is now hanging in the fake
        started = time.perf_counter()
        for i in range(1000):
            run.alerting.observe(expired(conn=info(f"c{i:04d}")))
        spent = time.perf_counter() - started
    assert spent < 0.5, f"1000 observe() calls took {spent:.3f} s"


async def test_stop_returns_promptly_with_a_call_in_flight(
    slack: FakeSlack, bot: BotSender
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    slack.fail_next(delay=5.0)
    run = make(store, bot, clock, stop_grace=0.2)
    await run.alerting.start()
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        task = group.create_task(run.alerting.run(stop))
        run.alerting.observe(expired())
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        stop.set()
        await task
        took = time.perf_counter() - started
    assert took < 1.0
    assert len(await store.outbox_all()) == 1  # sent after the next start
