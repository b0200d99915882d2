"""The alert rules, case by case, with explicit times and no I/O.

Each case feeds `(seconds after T0, subject)` steps to `evaluate`, applying every change
to a record map the way the service does (and dropping a resolved record right away, as
if its resolution had been delivered), and lists what was said: `(t, action, alert,
severity)`, or `muted:<why>` for an alert that started firing in silence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import time
from zoneinfo import ZoneInfo

import pytest

from monitor.model import AlertRecord, Grant, State
from monitor.notify.catalog import Action, AlertName, AlertSubject, Severity
from monitor.notify.maintenance import MaintenanceWindow
from monitor.notify.rules import (
    AlertPolicy,
    Grouping,
    evaluate,
    group_mode,
    group_reminder_due,
)
from tests.notify.subjects import DAY, HOUR, T0, expired, failing, healthy, info, subject

DEFAULT = AlertPolicy()
REMIND = DEFAULT.reminder_interval
Said = tuple[float, str, str, str]


def run(
    steps: Sequence[tuple[float, AlertSubject]],
    policy: AlertPolicy = DEFAULT,
    records: dict[str, AlertRecord] | None = None,
) -> list[Said]:
    records = {} if records is None else records
    said: list[Said] = []
    for t, subj in steps:
        decision = evaluate(records, subj, T0 + t, policy)
        for change in decision.changes:
            if change.record is None:
                records.pop(change.alert.value, None)
            else:
                records[change.alert.value] = change.record
            note = change.notification
            if note is not None:
                said.append((t, note.action.value, note.alert.value, note.severity.value))
            if change.muted is not None and change.record is not None:
                said.append(
                    (t, f"muted:{change.muted}", change.alert.value, change.record.severity)
                )
        for name, record in list(records.items()):
            if record.resolved_at is not None:
                del records[name]
    return said


AUTH_CODE = info("acme-dev", grant=Grant.AUTHORIZATION_CODE)
EXPIRES = T0 + 10 * DAY


def refresh(t: float, expires: float = EXPIRES, state: State = State.HEALTHY) -> AlertSubject:
    base = healthy(conn=AUTH_CODE) if state is State.HEALTHY else expired(conn=AUTH_CODE)
    return replace(base, refresh_expires_at=expires, can_renew_refresh=False)


def rate_limited(since: float, failures: int = 1) -> AlertSubject:
    return subject(State.RATE_LIMITED, since=since, failures=failures, reason="rate_limited")


CASES = [
    pytest.param(
        [
            (0, subject(State.DEGRADED, failures=1, reason="timeout")),
            (60, subject(State.DEGRADED, failures=2, reason="timeout")),
            (120, failing(since=T0 + 120)),
            (180, failing(since=T0 + 120, failures=4)),
            (240, subject(State.DEGRADED, since=T0 + 240, successes=1)),
            (300, healthy(2, since=T0 + 300)),
        ],
        [(120, "fire", "probe_failing", "warning"), (300, "resolve", "probe_failing", "warning")],
        id="probe failing fires once and resolves after two successes",
    ),
    pytest.param(
        [
            (0, failing()),
            (REMIND - 1, failing()),
            (REMIND, failing()),
            (REMIND + 1, failing()),
            (2 * REMIND, failing()),
        ],
        [
            (0, "fire", "probe_failing", "warning"),
            (REMIND, "remind", "probe_failing", "warning"),
            (2 * REMIND, "remind", "probe_failing", "warning"),
        ],
        id="reminders no more often than the interval",
    ),
    pytest.param(
        [
            (0, failing()),
            (60, subject(State.DEGRADED, since=T0 + 60, successes=1)),
            (120, failing(since=T0 + 120, failures=3)),
            (180, healthy(2, since=T0 + 180)),
        ],
        [(0, "fire", "probe_failing", "warning"), (180, "resolve", "probe_failing", "warning")],
        id="a flap within the success threshold neither resolves nor fires again",
    ),
    pytest.param(
        [
            (0, failing()),
            (60, expired(since=T0 + 60)),
            (60 + REMIND, expired(since=T0 + 60)),
            (70 + REMIND, healthy(1, since=T0 + 70 + REMIND)),
            (80 + REMIND, healthy(2, since=T0 + 70 + REMIND)),
        ],
        [
            (0, "fire", "probe_failing", "warning"),
            (60, "fire", "credentials_expired", "critical"),
            (60 + REMIND, "remind", "credentials_expired", "critical"),
            (70 + REMIND, "resolve", "credentials_expired", "critical"),
            (80 + REMIND, "resolve", "probe_failing", "warning"),
        ],
        id="expired credentials resolve on the first success, probe failing on the second",
    ),
    pytest.param(
        [
            (0, expired()),
            (60, subject(State.FORBIDDEN, since=T0 + 60, failures=1, reason="forbidden")),
            (120, subject(State.FORBIDDEN, since=T0 + 60, failures=3, reason="forbidden")),
        ],
        [
            (0, "fire", "credentials_expired", "critical"),
            (60, "resolve", "credentials_expired", "critical"),
            (120, "fire", "forbidden", "warning"),
        ],
        id="a 403 proves the credential works: expired resolves, forbidden takes over",
    ),
    pytest.param(
        [
            (0, subject(State.FORBIDDEN, failures=1, reason="forbidden")),
            (60, subject(State.FORBIDDEN, failures=2, reason="forbidden")),
            (120, subject(State.FORBIDDEN, failures=3, reason="forbidden")),
            (180, healthy(1, since=T0 + 180)),
            (240, healthy(2, since=T0 + 180)),
        ],
        [(120, "fire", "forbidden", "warning"), (240, "resolve", "forbidden", "warning")],
        id="forbidden waits for the failure threshold",
    ),
    pytest.param(
        [
            (0, rate_limited(T0)),
            (899, rate_limited(T0, failures=5)),
            (900, rate_limited(T0, failures=6)),
            (1000, healthy(1, since=T0 + 1000)),
            (1100, healthy(2, since=T0 + 1000)),
        ],
        [(900, "fire", "rate_limited", "warning"), (1100, "resolve", "rate_limited", "warning")],
        id="rate limiting fires once sustained",
    ),
    pytest.param(
        [
            (0, subject(State.HIBERNATING, failures=1, reason="hibernating")),
            (60, healthy(1, since=T0 + 60)),
            (120, healthy(2, since=T0 + 60)),
        ],
        [(0, "fire", "hibernating", "info"), (120, "resolve", "hibernating", "info")],
        id="hibernation is info and resolves after the success threshold",
    ),
    pytest.param(
        [
            (0, refresh(0)),
            (3 * DAY - 1, refresh(3 * DAY - 1)),
            (3 * DAY, refresh(3 * DAY)),
            (9 * DAY, refresh(9 * DAY)),
            (9 * DAY + 60, refresh(9 * DAY + 60, expires=T0 + 110 * DAY)),
        ],
        [
            (3 * DAY, "fire", "refresh_expiring", "warning"),
            (9 * DAY, "escalate", "refresh_expiring", "critical"),
            (9 * DAY + 60, "resolve", "refresh_expiring", "critical"),
        ],
        id="refresh expiring: warning at 7 days, critical at 1 day, resolved by a new token",
    ),
    pytest.param(
        [
            (3 * DAY, replace(refresh(3 * DAY), can_renew_refresh=True)),
            (9 * DAY, replace(refresh(9 * DAY), can_renew_refresh=True)),
            (9 * DAY, replace(refresh(9 * DAY), refresh_expires_at=None)),
        ],
        [],
        id="refresh expiring: never for a grant that renews, nor an unknown expiry",
    ),
    pytest.param(
        [(3 * DAY, refresh(3 * DAY, state=State.CREDENTIALS_EXPIRED))],
        [
            (3 * DAY, "fire", "credentials_expired", "critical"),
            (3 * DAY, "muted:inhibited", "refresh_expiring", "warning"),
        ],
        id="expired credentials inhibit the refresh expiry they explain",
    ),
    pytest.param(
        [(9 * DAY + 60, refresh(9 * DAY + 60, expires=T0 + 9 * DAY))],
        [(9 * DAY + 60, "fire", "refresh_expiring", "critical")],
        id="a refresh token already dead fires critical at once",
    ),
]


@pytest.mark.parametrize(("steps", "expected"), CASES)
def test_rules(steps: list[tuple[float, AlertSubject]], expected: list[Said]) -> None:
    assert run(steps) == expected


def test_send_resolved_off_deletes_in_silence() -> None:
    policy = AlertPolicy(send_resolved=False)
    records: dict[str, AlertRecord] = {}
    said = run([(0, failing()), (60, healthy(2))], policy, records)
    assert said == [(0, "fire", "probe_failing", "warning")]
    assert records == {}


def test_inhibited_probe_failing_stays_quiet_and_resolves_in_silence() -> None:
    # The credentials alert fired earlier and has not resolved (no success since).
    firing = AlertRecord("acme-prod", "credentials_expired", T0, "critical", T0)
    records = {"credentials_expired": firing}
    said = run(
        [(60, failing(since=T0 + 60)), (60 + REMIND, failing(since=T0 + 60))], records=records
    )
    assert said == [(60, "muted:inhibited", "probe_failing", "warning")]
    assert records["probe_failing"].last_notified_at is None
    said = run([(70 + REMIND, healthy(2))], records=records)
    assert said == [(70 + REMIND, "resolve", "credentials_expired", "critical")]
    assert records == {}  # probe failing was never told: it goes without a word


def test_reminders_of_a_told_alert_pause_while_inhibited() -> None:
    records: dict[str, AlertRecord] = {}
    t = 3 * DAY
    said = run(
        [
            (t, refresh(t)),
            (t + 60, refresh(t + 60, state=State.CREDENTIALS_EXPIRED)),
            (t + 60 + REMIND, refresh(t + 60 + REMIND, state=State.CREDENTIALS_EXPIRED)),
        ],
        records=records,
    )
    assert said == [
        (t, "fire", "refresh_expiring", "warning"),
        (t + 60, "fire", "credentials_expired", "critical"),
        (t + 60 + REMIND, "remind", "credentials_expired", "critical"),
    ]


# Friday 2027-01-15 08:00 UTC is 09:00 in Berlin.
BERLIN = ZoneInfo("Europe/Berlin")
MORNING = MaintenanceWindow({"customer": "acme"}, time(8, 30), HOUR, frozenset(), BERLIN)


def test_maintenance_mutes_fire_until_the_window_closes() -> None:
    policy = AlertPolicy(maintenance=(MORNING,))
    records: dict[str, AlertRecord] = {}
    decision = evaluate(records, failing(), T0, policy)
    (change,) = decision.changes
    assert change.notification is None
    assert change.muted is not None
    assert change.muted.value == "maintenance"
    assert decision.next_check == T0 + 30 * 60  # the window closes at 09:30 Berlin
    assert change.record is not None
    records["probe_failing"] = change.record
    assert evaluate(records, failing(), T0 + 29 * 60, policy).notifications == []
    late = evaluate(records, failing(), T0 + 30 * 60, policy).notifications
    assert [(n.action, n.firing_since) for n in late] == [(Action.FIRE, T0)]


def test_maintenance_lets_the_resolution_of_a_told_alert_through() -> None:
    policy = AlertPolicy(maintenance=(MORNING,))
    told = {"probe_failing": AlertRecord("acme-prod", "probe_failing", T0 - HOUR, "warning", T0)}
    notes = evaluate(told, healthy(2), T0 + 60, policy).notifications
    assert [n.action for n in notes] == [Action.RESOLVE]


def test_maintenance_matches_labels_or_the_connection_id_only() -> None:
    other = MaintenanceWindow({"connection": "other"}, time(8, 30), HOUR, frozenset(), BERLIN)
    policy = AlertPolicy(maintenance=(other,))
    notes = evaluate({}, failing(), T0, policy).notifications
    assert [n.action for n in notes] == [Action.FIRE]


def test_escalation_during_maintenance_is_silent_and_the_late_message_is_critical() -> None:
    window = MaintenanceWindow({"connection": "acme-dev"}, time(8, 30), DAY, frozenset(), BERLIN)
    policy = AlertPolicy(maintenance=(window,))
    records: dict[str, AlertRecord] = {}
    said = run([(3 * DAY, refresh(3 * DAY)), (9 * DAY, refresh(9 * DAY))], policy, records)
    assert said == [(3 * DAY, "muted:maintenance", "refresh_expiring", "warning")]
    assert records["refresh_expiring"].severity == "critical"
    # 9.5 days: after the Berlin 08:30 window of that day closed? It is open a full day
    # from every 08:30, so it never closes; a policy without it sends the late message.
    said = run([(9 * DAY + 60, refresh(9 * DAY + 60))], DEFAULT, records)
    assert said == [(9 * DAY + 60, "fire", "refresh_expiring", "critical")]


def test_a_resolution_in_flight_blocks_a_new_incarnation() -> None:
    resolving = AlertRecord("acme-prod", "probe_failing", T0, "warning", T0, resolved_at=T0 + 60)
    decision = evaluate({"probe_failing": resolving}, failing(since=T0 + 90), T0 + 120, DEFAULT)
    assert decision.changes == ()


@pytest.mark.parametrize(
    ("subj", "now", "expected"),
    [
        (healthy(), T0, None),
        (failing(), T0, T0 + REMIND),
        (rate_limited(T0), T0 + 10, T0 + 900),
        (refresh(0), T0, EXPIRES - 7 * DAY),
        (refresh(3 * DAY), T0 + 3 * DAY, T0 + 3 * DAY + REMIND),  # fired: a reminder first
        (refresh(9 * DAY - 1), T0 + 9 * DAY - 1, EXPIRES - DAY),  # escalation before reminder
    ],
    ids=[
        "healthy",
        "reminder",
        "rate limit sustained",
        "warning horizon",
        "reminder before critical",
        "critical horizon",
    ],
)
def test_next_check(subj: AlertSubject, now: float, expected: float | None) -> None:
    assert evaluate({}, subj, now, DEFAULT).next_check == expected


def test_notification_carries_what_the_message_needs() -> None:
    (note,) = evaluate({}, expired(), T0 + 5, DEFAULT).notifications
    assert note.alert is AlertName.CREDENTIALS_EXPIRED
    assert note.severity is Severity.CRITICAL
    assert (note.connection_id, note.customer, note.reason) == ("acme-prod", "acme", "rejected")
    assert (note.state_since, note.firing_since, note.at) == (T0, T0, T0 + 5)
    assert note.detail == "server_error: access_denied"


def test_detail_is_shortened() -> None:
    long = replace(failing(), health=replace(failing().health, last_error="x" * 5000))
    (note,) = evaluate({}, long, T0, DEFAULT).notifications
    assert len(note.detail) == 300


@pytest.mark.parametrize(
    ("recent", "open_since", "now", "policy", "expected"),
    [
        (0, None, T0, DEFAULT, Grouping.SINGLE),
        (4, None, T0, DEFAULT, Grouping.SINGLE),
        (5, None, T0, DEFAULT, Grouping.OPEN),
        (0, T0 - 59, T0, DEFAULT, Grouping.JOIN),
        (9, T0 - 60, T0, DEFAULT, Grouping.OPEN),  # the old group closed: a new one
        (1, T0 - 60, T0, DEFAULT, Grouping.SINGLE),
        (100, T0, T0, AlertPolicy(group_window=0.0), Grouping.SINGLE),
        (1, None, T0, AlertPolicy(group_threshold=1), Grouping.OPEN),
    ],
)
def test_group_mode(
    recent: int, open_since: float | None, now: float, policy: AlertPolicy, expected: Grouping
) -> None:
    assert group_mode(recent, open_since, now, policy) is expected


@pytest.mark.parametrize(
    ("last", "now", "due"),
    [(T0, T0 + REMIND / 2 - 1, False), (T0, T0 + REMIND / 2, True), (T0, T0 + REMIND, True)],
)
def test_group_reminder_due(last: float, now: float, due: bool) -> None:
    assert group_reminder_due(last, now, DEFAULT) is due
