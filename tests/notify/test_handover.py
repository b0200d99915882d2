"""A connection changes hands between replicas sharing one store: the new owner continues
the previous owner's alert (no second message, its resolution edits the first one) and
the previous owner stops evaluating it (no reminder from stale health)."""

from __future__ import annotations

from monitor.clock import ManualClock
from monitor.notify.rules import AlertPolicy
from monitor.notify.slack import BotSender
from monitor.store.memory import MemoryStore
from tests.fakes.slack_api import FakeSlack
from tests.notify.harness import assert_fired_then_resolved_by_edit, make, running
from tests.notify.subjects import T0, expired, healthy

CID = "acme-prod"
REMIND = AlertPolicy().reminder_interval


async def test_new_owner_continues_the_alert_and_resolves_it_in_place(
    bot: BotSender, slack: FakeSlack
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    a, b = make(store, bot, clock), make(store, bot, clock)
    async with running(b), running(a):  # b started before a fires
        a.alerting.observe(expired())
        await a.settle()
        assert [c.method for c in slack.calls] == ["chat.postMessage"]
        ts = slack.messages[0].ts

        a.alerting.released([CID])
        await b.alerting.adopting([CID])
        b.alerting.observe(expired())
        await b.advance(REMIND / 2)
        await a.settle()
        assert len(slack.calls) == 1  # no second fire from the new owner
        assert [r.message_ts for r in b.alerting.firing()] == [ts]
        assert a.alerting.firing() == []  # forgotten in memory ...
        assert [r.message_ts for r in await store.load_alerts()] == [ts]  # ... not stored

        b.alerting.observe(healthy(2))
        await b.settle()
    await assert_fired_then_resolved_by_edit(slack, store, ts)


async def test_released_connection_is_no_longer_evaluated(bot: BotSender, slack: FakeSlack) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    a = make(store, bot, clock)
    async with running(a):
        a.alerting.observe(expired())
        await a.settle()
        await a.advance(REMIND + 1)
        assert len(slack.calls) == 2  # the owner reminds ...
        a.alerting.released([CID])
        await a.advance(REMIND * 3)
        assert len(slack.calls) == 2  # ... the previous owner does not
        assert a.alerting.firing() == []
    (record,) = await store.load_alerts()
    assert record.message_ts == slack.messages[0].ts


async def test_queued_notification_of_a_released_connection_is_sent_once(
    bot: BotSender, slack: FakeSlack
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    a, b = make(store, bot, clock), make(store, bot, clock)
    async with running(b), running(a):
        slack.outage = True
        a.alerting.observe(expired())
        await a.settle()
        assert a.alerting.queued == 1
        a.alerting.released([CID])
        assert [r.connection_id for r in a.alerting.firing()] == [CID]  # kept for the job

        slack.outage = False
        await a.advance(600)
        assert len(slack.messages) == 1  # delivered by the replica that queued it
        assert a.alerting.firing() == []  # then forgotten
        (record,) = await store.load_alerts()
        assert record.message_ts == slack.messages[0].ts

        await b.alerting.adopting([CID])
        b.alerting.observe(expired())
        await b.advance(REMIND / 2)
        b.alerting.observe(healthy(2))
        await b.settle()
    posts = [c for c in slack.accepted() if c.method == "chat.postMessage"]
    assert len([c for c in posts if "thread_ts" not in c.body]) == 1
    updates = [c for c in slack.accepted() if c.method == "chat.update"]
    assert [c.body["ts"] for c in updates] == [slack.messages[0].ts]
