"""The outbox codec and crash repair: which jobs a restart delivers, which records it keeps."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from monitor.clock import ManualClock
from monitor.model import AlertRecord, Grant, State
from monitor.notify.catalog import Action, AlertName, Notification, Severity
from monitor.notify.outbox import Job, JobKind, Keys, decode, encode, replay
from monitor.notify.slack import BotSender
from monitor.store.memory import MemoryStore
from tests.fakes.slack_api import FakeSlack
from tests.notify.harness import make, running
from tests.notify.subjects import T0, expired, failing, info

NOTE = Notification(
    action=Action.FIRE,
    alert=AlertName.PROBE_FAILING,
    severity=Severity.WARNING,
    connection_id="acme-prod",
    instance_url="https://acme.service-now.com",
    grant=Grant.PASSWORD,
    state=State.FAILING,
    state_since=T0,
    firing_since=T0,
    at=T0,
    reason="timeout",
    detail="no answer",
    consecutive_failures=3,
    labels={"customer": "acme"},
)
KEY = ("acme-prod", "probe_failing")


def record(rev: int, *, since: float = T0, **extra: str) -> AlertRecord:
    return AlertRecord(
        "acme-prod", "probe_failing", since, "warning", T0, extra={"rev": str(rev), **extra}
    )


def job(key: str, rev: int, *, since: float = T0, action: Action = Action.FIRE) -> Job:
    note = replace(NOTE, action=action, firing_since=since)
    return Job(key, JobKind.ALERT, "#acme", note, record(rev, since=since))


def test_jobs_round_trip() -> None:
    alert_job = replace(
        job("000000000001.abc", 1), notification=replace(NOTE, previous_severity=Severity.INFO)
    )
    group_job = Job("000000000002.abc", JobKind.GROUP, "#acme", group_id="g1", reply=Action.REMIND)
    for original in (alert_job, group_job):
        assert decode(original.key, encode(original)) == original


@pytest.mark.parametrize(
    "payload",
    ["", "{", "[]", '{"kind": "fax"}', '{"kind": "alert"}', '{"kind": "group"}'],
)
def test_decode_refuses_what_is_not_a_job(payload: str) -> None:
    with pytest.raises(ValueError, match="outbox job k1 is not a job"):
        decode("k1", payload)


@pytest.mark.parametrize(
    ("stored", "jobs", "expected_record", "live"),
    [
        # The record write was lost after the job was written: the snapshot comes back.
        (None, [job("k1", 1)], record(1), ["k1"]),
        # The record is older than the job: the job's snapshot wins.
        (record(1), [job("k2", 2, action=Action.REMIND)], record(2), ["k2"]),
        # Delivered and marked, but the outbox delete was lost: not sent again.
        (record(3, delivered="k1"), [job("k1", 1)], record(3, delivered="k1"), []),
        # A later incarnation replaced it: the old job has nothing left to say.
        (record(1, since=T0 + 600), [job("k1", 5)], record(1, since=T0 + 600), []),
        # Two jobs of one alert: the newest snapshot, both still to deliver.
        (None, [job("k2", 2, action=Action.REMIND), job("k1", 1)], record(2), ["k1", "k2"]),
    ],
    ids=["lost record", "older record", "already delivered", "later incarnation", "in order"],
)
def test_replay(
    stored: AlertRecord | None, jobs: list[Job], expected_record: AlertRecord, live: list[str]
) -> None:
    records = {} if stored is None else {KEY: stored}
    assert [j.key for j in replay(records, jobs)] == live
    assert records == {KEY: expected_record}


def test_group_jobs_are_kept_for_their_group_to_judge() -> None:
    group_job = Job("k9", JobKind.GROUP, "#acme", group_id="g1")
    assert replay({}, [group_job]) == [group_job]


def test_keys_sort_in_admission_order_and_continue_after_a_restart() -> None:
    first = Keys()
    keys = [first.next() for _ in range(12)]
    assert keys == sorted(keys)
    second = Keys()
    for key in keys:
        second.seen(key)
    later = second.next()
    assert later > max(keys)
    assert later.split(".")[1] != keys[0].split(".")[1]  # replicas never collide


async def test_an_unreadable_outbox_entry_is_logged_and_removed(
    bot: BotSender, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    await store.outbox_put("000000000001.zzz", "{not json")
    run = make(store, bot, clock)
    with caplog.at_level(logging.WARNING, logger="snowmon.notify"):
        async with running(run):
            run.alerting.observe(expired())
            await run.settle()
    assert [r.getMessage() for r in caplog.records] == ["slack.outbox_unreadable"]
    assert await store.outbox_all() == []
    assert len(slack.messages) == 1


async def test_a_resolved_record_without_its_job_is_cleared_at_start(
    bot: BotSender, slack: FakeSlack
) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    await store.save_alerts([replace(record(4), resolved_at=T0 + 60)])
    run = make(store, bot, clock)
    async with running(run):
        await run.settle()
    assert await store.load_alerts() == []
    assert slack.calls == []


async def test_group_reminds_once_in_its_thread(bot: BotSender, slack: FakeSlack) -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    run = make(store, bot, clock)
    async with running(run):
        for i in range(10):
            run.alerting.observe(failing(conn=info(f"fleet-{i}")))
        await run.settle()
        assert len(slack.messages) == 6
        await run.advance(4 * 3600)
        await run.advance(60)
    group = slack.messages[5]
    replies = [c.body for c in slack.calls[6:]]
    assert len(replies) == 6  # five singles and the group, one reply each
    assert all(r["thread_ts"] for r in replies)
    assert [r["text"] for r in group.replies] == [
        ":bell: Still firing: 5 of 5 connections, since 2027-01-15 08:00 UTC."
    ]
