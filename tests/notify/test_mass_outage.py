"""A whole customer goes down at once: a handful of messages, not a thousand.

1,000 connections of one customer (one channel) start failing. The first few get a
message each; the rest join a group message that is edited as it grows; a restart in
the middle repeats nothing; recovery resolves the singles and edits the group once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from monitor.clock import ManualClock
from monitor.model import ConnectionInfo, Grant
from monitor.notify.slack import BotSender, WebhookSender
from monitor.store.crypto import Keyring, generate_key
from monitor.store.memory import MemoryStore
from monitor.store.sqlite import SqliteStore
from tests.fakes.slack_api import FakeSlack, channel_id
from tests.notify.harness import Run, make, running
from tests.notify.subjects import T0, expired, failing, healthy, info

FLEET = [info(f"fleet-{i:04d}") for i in range(1000)]
ACME = "#acme-integrations"


def fail_all(conns: list[ConnectionInfo]) -> list[object]:
    return [failing(conn=c) for c in conns]


async def test_one_thousand_connections_make_a_handful_of_messages(
    bot: BotSender, slack: FakeSlack
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    first = make(store, bot, clock)
    async with running(first):
        for conn in FLEET[:10]:
            first.alerting.observe(failing(conn=conn))
        await first.settle()
        # Five singles, then the group opens with the other five.
        assert [c.method for c in slack.calls] == ["chat.postMessage"] * 6
        group = slack.messages[5]
        assert group.body["text"].startswith("[WARNING] 5 connections alerting")

        await first.advance(20)
        started = time.perf_counter()
        for conn in FLEET[10:]:
            first.alerting.observe(failing(conn=conn))
        observe_seconds = time.perf_counter() - started
        await first.settle()
        assert [c.method for c in slack.calls][6:] == ["chat.update"]  # the group grows
        assert group.current["text"].startswith("[WARNING] 995 connections alerting")
        assert group.current["blocks"][0]["text"]["text"] == (
            f":large_orange_circle: 995 connections alerting in {ACME}"
        )
        await first.advance(120)
        for conn in FLEET:
            first.alerting.observe(failing(conn=conn))
        await first.settle()
    assert len(slack.calls) == 7
    assert observe_seconds < 1.0, f"990 observe() calls took {observe_seconds:.3f} s"

    # A restart with the same health: nothing to say.
    second = make(store, bot, clock)
    async with running(second):
        for conn in FLEET:
            second.alerting.observe(failing(conn=conn))
        await second.advance(60)
        assert len(slack.calls) == 7

        for conn in FLEET:
            second.alerting.observe(healthy(2, since=T0 + 300, conn=conn))
        await second.settle()

    recovery = slack.calls[7:]
    singles = [m.ts for m in slack.messages[:5]]
    cid = channel_id(ACME)
    assert [(c.method, c.body.get("ts") or c.body.get("thread_ts")) for c in recovery] == [
        pair for ts in singles for pair in (("chat.update", ts), ("chat.postMessage", ts))
    ] + [("chat.update", group.ts), ("chat.postMessage", group.ts)]
    assert all(c.body["channel"] == cid for c in recovery)
    assert group.current["text"] == "[RESOLVED] all 995 connections recovered."
    assert group.replies[0]["text"].startswith(":white_check_mark: All 995 connections recovered")
    assert len(slack.messages) == 6
    assert await store.load_alerts() == []
    assert await store.outbox_all() == []


async def test_a_rolling_outage_makes_one_group_per_window(
    bot: BotSender, slack: FakeSlack
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    run = make(store, bot, clock)
    async with running(run):
        # 1,000 connections going down over five minutes, one every 0.3 s.
        for start in range(0, 1000, 50):
            for conn in FLEET[start : start + 50]:
                run.alerting.observe(failing(since=clock.now(), conn=conn))
                clock.advance(0.3)
            await run.settle()
    posts = [c for c in slack.calls if c.method == "chat.postMessage"]
    assert len(posts) == 5 + 5  # five singles, then a group per minute
    groups = slack.messages[5:]
    totals = [int(m.current["text"].split()[1]) for m in groups]
    assert sum(totals) == 995
    assert len(slack.calls) < 40


async def test_webhook_posts_the_group_once_it_is_complete(
    webhook: WebhookSender, slack: FakeSlack
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    run = make(store, webhook, clock)
    async with running(run):
        for conn in FLEET[:100]:
            run.alerting.observe(failing(conn=conn))
        await run.settle()
        assert len(slack.webhook_posts) == 5  # the singles; the group is still filling
        await run.advance(60)
        assert len(slack.webhook_posts) == 6
        assert slack.webhook_posts[5]["text"].startswith("[WARNING] 95 connections alerting")
        for conn in FLEET[:100]:
            run.alerting.observe(healthy(2, conn=conn))
        await run.settle()
    texts = [p["text"] for p in slack.webhook_posts[6:]]
    assert texts.count("[RESOLVED] all 95 connections recovered.") == 1
    assert sum(t.startswith("[RESOLVED] Probe failing") for t in texts) == 5
    assert len(texts) == 6


async def test_group_survives_a_restart_while_slack_is_down(
    bot: BotSender, slack: FakeSlack
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    slack.outage = True
    first = make(store, bot, clock)
    async with running(first):
        for conn in FLEET[:50]:
            first.alerting.observe(failing(conn=conn))
        await first.settle()
    assert slack.accepted() == []
    slack.outage = False

    second = make(store, bot, clock)
    async with running(second):
        for conn in FLEET[:50]:
            second.alerting.observe(failing(conn=conn))
        await second.settle()
        await second.advance(60)
    assert [c.method for c in slack.accepted()] == ["chat.postMessage"] * 6
    assert slack.messages[5].current["text"].startswith("[WARNING] 45 connections alerting")


async def test_restart_over_sqlite_repeats_nothing(
    bot: BotSender, slack: FakeSlack, tmp_path: Path
) -> None:
    key, clock = generate_key(), ManualClock(T0)
    path = tmp_path / "snowmon.db"

    async def process(then: Callable[[Run], Awaitable[None]]) -> None:
        store = SqliteStore(path, Keyring([key]))
        await store.open()
        try:
            run = make(store, bot, clock)
            async with running(run):
                await then(run)
        finally:
            await store.close()

    async def outage(run: Run) -> None:
        for conn in FLEET[:20]:
            run.alerting.observe(failing(conn=conn))
        run.alerting.observe(expired(conn=info("acme-dev", grant=Grant.AUTHORIZATION_CODE)))
        await run.settle()

    async def same_again(run: Run) -> None:
        await outage(run)
        assert len(slack.calls) == 6

    async def recovery(run: Run) -> None:
        for conn in [*FLEET[:20], info("acme-dev", grant=Grant.AUTHORIZATION_CODE)]:
            run.alerting.observe(healthy(2, conn=conn))
        await run.advance(60)

    await process(outage)
    # Five singles, then a group of 16 with the expired credentials at its top.
    assert [c.method for c in slack.calls] == ["chat.postMessage"] * 6
    assert slack.messages[5].body["text"].startswith("[CRITICAL] 16 connections alerting")
    await process(same_again)
    await process(recovery)
    assert len(slack.messages) == 6
    assert all(m.current["text"].startswith("[RESOLVED]") for m in slack.messages)
    store = SqliteStore(path, Keyring([key]))
    await store.open()
    try:
        assert await store.load_alerts() == []
        assert await store.outbox_all() == []
    finally:
        await store.close()
