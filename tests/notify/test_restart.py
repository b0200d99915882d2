"""A restart at any point neither repeats nor forgets an alert: the records and the outbox
in the store carry everything across, including crashes between two writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import pytest

from monitor.clock import ManualClock
from monitor.errors import StoreError
from monitor.model import AlertRecord
from monitor.notify.rules import AlertPolicy
from monitor.notify.slack import BotSender
from monitor.store.memory import MemoryStore
from tests.fakes.slack_api import FakeSlack
from tests.notify.harness import assert_fired_then_resolved_by_edit, make, running
from tests.notify.subjects import T0, expired, healthy

REMIND_HALF = AlertPolicy().reminder_interval / 2


async def test_restart_in_between_sends_no_duplicate(bot: BotSender, slack: FakeSlack) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    first = make(store, bot, clock)
    async with running(first):
        first.alerting.observe(expired())
        await first.settle()
    assert len(slack.calls) == 1

    second = make(store, bot, clock)
    async with running(second):
        second.alerting.observe(expired())
        await second.advance(REMIND_HALF)
        assert len(slack.calls) == 1  # remembered: no second message
        second.alerting.observe(healthy(1))
        await second.settle()
    ts = slack.messages[0].ts
    await assert_fired_then_resolved_by_edit(slack, store, ts)


async def test_unsent_alert_waits_in_the_outbox_across_a_restart(
    bot: BotSender, slack: FakeSlack
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    slack.outage = True
    first = make(store, bot, clock)
    async with running(first):
        first.alerting.observe(expired())
        await first.settle()
    assert [c.status for c in slack.calls] == [503]
    assert len(await store.outbox_all()) == 1
    assert [r.alert for r in await store.load_alerts()] == ["credentials_expired"]

    slack.outage = False
    second = make(store, bot, clock)
    async with running(second):
        await second.settle()
        second.alerting.observe(expired())
        await second.settle()
    assert [c.status for c in slack.calls] == [503, 200]
    assert len(slack.messages) == 1
    assert await store.outbox_all() == []
    (record,) = await store.load_alerts()
    assert record.message_ts == slack.messages[0].ts


class CrashAfter(MemoryStore):
    """A store whose process 'dies' at one write: that write and every later one fail."""

    def __init__(self, fail: str) -> None:
        super().__init__()
        self.fail = fail
        self.dead = False

    async def save_alerts(self, records: Sequence[AlertRecord]) -> None:
        self._check("save_alerts")
        await super().save_alerts(records)

    async def outbox_delete(self, key: str) -> None:
        self._check("outbox_delete")
        await super().outbox_delete(key)

    async def outbox_put(self, key: str, payload: str) -> None:
        self._check("outbox_put")
        await super().outbox_put(key, payload)

    def _check(self, name: str) -> None:
        if self.dead or name == self.fail:
            self.dead = True
            raise StoreError(f"{name}: the process died here")

    def restarted(self) -> MemoryStore:
        fresh = MemoryStore()
        fresh._alerts = dict(self._alerts)
        fresh._outbox = dict(self._outbox)
        return fresh


async def test_crash_between_outbox_and_record_write_fires_once(
    bot: BotSender, slack: FakeSlack
) -> None:
    clock = ManualClock(T0)
    dying = CrashAfter("save_alerts")
    slack.outage = True  # the first process never reaches Slack
    first = make(dying, bot, clock)
    async with running(first):
        first.alerting.observe(expired())
        await first.settle()
    assert await dying.load_alerts() == []  # the record write was lost ...
    assert len(await dying.outbox_all()) == 1  # ... the job was not

    slack.outage = False
    store = dying.restarted()
    second = make(store, bot, clock)
    async with running(second):
        second.alerting.observe(expired())
        await second.settle()
    assert [c.status for c in slack.calls] == [503, 200]
    assert len(slack.messages) == 1


async def test_crash_after_delivery_before_outbox_delete_does_not_resend(
    bot: BotSender, slack: FakeSlack
) -> None:
    clock = ManualClock(T0)
    dying = CrashAfter("outbox_delete")
    first = make(dying, bot, clock)
    async with running(first):
        first.alerting.observe(expired())
        await first.settle()
    assert len(await dying.outbox_all()) == 1
    (record,) = await dying.load_alerts()
    assert record.extra["delivered"] == (await dying.outbox_all())[0][0]

    store = dying.restarted()
    second = make(store, bot, clock)
    async with running(second):
        second.alerting.observe(expired())
        await second.settle()
    assert len(slack.calls) == 1
    assert await store.outbox_all() == []


async def test_a_connection_removed_from_the_config_is_named_not_evaluated(
    bot: BotSender, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    firing = AlertRecord("gone-prod", "credentials_expired", T0 - 3600, "critical")
    firing = replace(firing, channel="C1", message_ts="1700000000.000100")
    await store.save_alerts([firing])
    run = make(store, bot, clock)
    caplog.set_level(logging.WARNING, logger="snowmon.notify")
    await run.alerting.start(configured=["acme-prod"])
    async with running(run, start=False):
        run.alerting.observe(healthy())
        await run.settle()
        await run.advance(5 * 3600)  # past the reminder interval: nothing for gone-prod
    assert run.alerting.firing() == []
    assert slack.calls == []
    (line,) = [r.__dict__ for r in caplog.records if r.getMessage() == "alert.connection_removed"]
    assert (line["connection"], line["alert"], line["slack_message"]) == (
        "gone-prod",
        "credentials_expired",
        True,
    )
    assert await store.load_alerts() == [firing]  # kept for a replica that may still keep it
