"""Alerting end to end at its own level: health updates in, HTTP calls to a fake Slack out.

A manual clock drives time; `settle()` waits for the delivery loop to run a full cycle.
Every test asserts the exact calls Slack received, in order, with their threading.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import time as clock_time

import pytest

from monitor.clock import ManualClock
from monitor.model import AlertRecord, Grant
from monitor.notify.maintenance import MaintenanceWindow
from monitor.notify.rules import AlertPolicy
from monitor.notify.slack import BotSender, WebhookSender
from monitor.store.memory import MemoryStore
from tests.fakes.slack_api import FakeSlack, channel_id
from tests.notify.harness import make, running
from tests.notify.subjects import DAY, HOUR, T0, expired, failing, healthy, info

ACME = "#acme-integrations"
NO_GROUPS = AlertPolicy(group_window=0.0)
BACKOFF_MAX = 300.0


def heads(slack: FakeSlack) -> list[str]:
    """Each call as `method channel [thread|ts] first words of text`."""
    out = []
    for call in slack.calls:
        body = call.body
        where = body.get("channel", "")
        ref = f" thread={body['thread_ts']}" if "thread_ts" in body else ""
        ref += f" ts={body['ts']}" if "ts" in body else ""
        out.append(f"{call.method} {where}{ref} {call.status} {str(body.get('text'))[:48]}")
    return out


async def test_expired_credentials_fire_once_and_resolve_by_editing(
    bot: BotSender, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="snowmon.notify")
    store, clock = MemoryStore(), ManualClock(T0)
    run = make(store, bot, clock)
    async with running(run):
        run.alerting.observe(expired())
        await run.settle()
        run.alerting.observe(expired())  # the same health again: nothing new
        await run.advance(60)
        (message,) = slack.messages
        assert message.channel == channel_id(ACME)
        assert message.body["text"].startswith("[CRITICAL] Credentials expired: acme-prod (acme)")
        assert run.alerting.firing()[0].message_ts == message.ts

        run.alerting.observe(healthy(1, since=T0 + 60))
        await run.settle()
    ts, cid = message.ts, message.channel
    assert heads(slack) == [
        f"chat.postMessage {ACME} 200 [CRITICAL] Credentials expired: acme-prod (acme)",
        f"chat.update {cid} ts={ts} 200 [RESOLVED] Credentials expired: acme-prod (acme)",
        f"chat.postMessage {cid} thread={ts} 200 :white_check_mark: Resolved after 1 min.",
    ]
    assert message.current["blocks"][0]["text"]["text"].startswith(":white_check_mark: Resolved")
    assert await store.load_alerts() == []
    assert await store.outbox_all() == []
    assert run.results == {"sent": 2}
    sent = [r.__dict__ for r in caplog.records if r.getMessage() == "slack.sent"]
    assert [(r["connection"], r["alert"], r["action"]) for r in sent] == [
        ("acme-prod", "credentials_expired", "fire"),
        ("acme-prod", "credentials_expired", "resolve"),
    ]


async def test_reminder_is_a_thread_reply_driven_by_the_clock(
    bot: BotSender, slack: FakeSlack
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    run = make(store, bot, clock)
    async with running(run):
        run.alerting.observe(failing())
        await run.settle()
        await run.advance(4 * HOUR - 1)
        assert len(slack.calls) == 1
        await run.advance(1)  # no new health update: the clock alone reminds
    ts = slack.messages[0].ts
    assert [c.body.get("thread_ts") for c in slack.calls] == [None, ts]
    assert slack.messages[0].replies[0]["text"].startswith(":bell: Still firing: Probe failing")


async def test_refresh_expiry_escalates_by_editing_and_replying(
    bot: BotSender, slack: FakeSlack
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    conn = info("acme-dev", grant=Grant.AUTHORIZATION_CODE)
    subject = replace(healthy(conn=conn), refresh_expires_at=T0 + 7 * DAY, can_renew_refresh=False)
    run = make(store, bot, clock, policy=AlertPolicy(reminder_interval=30 * DAY))
    async with running(run):
        run.alerting.observe(subject)
        await run.settle()
        await run.advance(6 * DAY)
        renewed = replace(subject, refresh_expires_at=T0 + 106 * DAY)
        run.alerting.observe(renewed)
        await run.settle()
    (message,) = slack.messages
    assert [c.method for c in slack.calls] == [
        "chat.postMessage",
        "chat.update",
        "chat.postMessage",
        "chat.update",
        "chat.postMessage",
    ]
    assert message.body["text"].startswith("[WARNING] Refresh token expiring: acme-dev")
    assert message.edits[0]["text"].startswith("[CRITICAL] Refresh token expiring")
    assert message.replies[0]["text"].startswith(":red_circle: Now critical (was warning)")
    assert message.current["text"].startswith("[RESOLVED] Refresh token expiring")
    assert "/connect/acme-dev" in str(message.body["blocks"])


async def test_maintenance_holds_the_alert_until_the_window_closes(
    bot: BotSender, slack: FakeSlack
) -> None:
    window = MaintenanceWindow({"customer": "acme"}, clock_time(7, 30), HOUR)  # 07:30-08:30 UTC
    store, clock = MemoryStore(), ManualClock(T0)
    run = make(store, bot, clock, policy=AlertPolicy(maintenance=(window,)))
    async with running(run):
        run.alerting.observe(failing())
        await run.settle()
        assert slack.calls == []
        assert run.results == {"suppressed": 1}
        await run.advance(30 * 60)
    assert len(slack.messages) == 1
    assert slack.messages[0].body["text"].startswith("[WARNING] Probe failing")


async def test_routing_by_connection_label_and_default(bot: BotSender, slack: FakeSlack) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    run = make(store, bot, clock, policy=NO_GROUPS)
    async with running(run):
        run.alerting.observe(expired(conn=info("own", channel="#own-channel")))
        run.alerting.observe(expired(conn=info("acme-x")))
        run.alerting.observe(expired(conn=info("globex-x", customer="globex")))
        await run.settle()
    assert [c.body["channel"] for c in slack.calls] == ["#own-channel", ACME, "#snowmon-alerts"]


async def test_webhook_posts_a_new_message_for_the_resolution(
    webhook: WebhookSender, slack: FakeSlack
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    run = make(store, webhook, clock)
    async with running(run):
        run.alerting.observe(expired())
        await run.settle()
        run.alerting.observe(expired())
        await run.advance(60)
        run.alerting.observe(healthy(1))
        await run.settle()
    assert [p["text"][:40] for p in slack.webhook_posts] == [
        "[CRITICAL] Credentials expired: acme-pro",
        "[RESOLVED] Credentials expired: acme-pro",
    ]
    assert await store.load_alerts() == []


async def test_without_slack_state_is_kept_and_counted(slack: FakeSlack) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    run = make(store, None, clock)
    async with running(run):
        run.alerting.observe(expired())
        await run.settle()
        assert [r.alert for r in run.alerting.firing()] == ["credentials_expired"]
        assert [r.alert for r in await store.load_alerts()] == ["credentials_expired"]
        run.alerting.observe(healthy(1))
        await run.settle()
    assert run.alerting.firing() == []
    assert await store.load_alerts() == []
    assert run.results == {"suppressed": 2}
    assert slack.calls == []


async def test_refused_message_is_counted_and_does_not_block_the_rest(
    bot: BotSender, slack: FakeSlack
) -> None:
    slack.missing_channels.add(ACME)
    store, clock = MemoryStore(), ManualClock(T0)
    run = make(store, bot, clock, policy=NO_GROUPS)
    async with running(run):
        run.alerting.observe(expired())
        run.alerting.observe(expired(conn=info("globex-x", customer="globex")))
        await run.settle()
    assert [(c.body["channel"], c.status, c.ok) for c in slack.calls] == [
        (ACME, 200, False),
        ("#snowmon-alerts", 200, True),
    ]
    assert run.results == {"failed": 1, "sent": 1}
    assert await store.outbox_all() == []


async def test_deleted_original_is_posted_again_on_resolution(
    bot: BotSender, slack: FakeSlack
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    run = make(store, bot, clock)
    async with running(run):
        run.alerting.observe(expired())
        await run.settle()
        slack.messages.clear()  # someone deleted it in Slack
        run.alerting.observe(healthy(1))
        await run.settle()
    methods = [(c.method, c.ok) for c in slack.calls]
    assert methods == [
        ("chat.postMessage", True),
        ("chat.update", False),
        ("chat.postMessage", True),
        ("chat.postMessage", True),
    ]
    (again,) = slack.messages
    assert again.body["text"].startswith("[RESOLVED]")
    assert slack.calls[3].body["thread_ts"] == again.ts


async def test_flap_while_slack_is_down_says_nothing(bot: BotSender, slack: FakeSlack) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    slack.outage = True
    run = make(store, bot, clock)
    async with running(run):
        run.alerting.observe(expired())
        await run.settle()
        run.alerting.observe(healthy(1))
        slack.outage = False
        await run.advance(BACKOFF_MAX)
    assert slack.accepted() == []
    assert await store.outbox_all() == []
    assert await store.load_alerts() == []


async def test_records_of_other_subjects_are_not_touched(bot: BotSender, slack: FakeSlack) -> None:
    # A record loaded from the store for a connection never observed stays as it is.
    store, clock = MemoryStore(), ManualClock(T0)
    await store.save_alerts([AlertRecord("gone", "probe_failing", T0 - DAY, "warning", T0 - DAY)])
    run = make(store, bot, clock)
    async with running(run):
        run.alerting.observe(healthy())
        await run.advance(DAY)
    assert [r.connection_id for r in run.alerting.firing()] == ["gone"]
    assert slack.calls == []
