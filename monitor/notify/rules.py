"""Alert rules: when an alert of one connection fires, reminds, escalates and resolves.

Pure and total: `evaluate(records, subject, now, policy)` looks at a connection's health
and the alert records it already has, and answers what changes (records to write or
delete, notifications to send) and when time alone could change the answer again.

Semantics follow Alertmanager and Gatus:
- an alert fires once its condition holds (the health machine already counted
  `failure_threshold` failures for `failing`; `forbidden` waits for as many);
- it resolves only on evidence: `success_threshold` successes in a row for probe-driven
  alerts, one success for expired credentials (a 403 also proves that the credential was
  accepted), a refresh token beyond the warning horizon for `refresh_expiring`;
- reminders no more often than `reminder_interval`; a resolution is sent only for an
  alert people were told about;
- inhibition: expired credentials silence `probe_failing`, `forbidden` and
  `refresh_expiring` of the same connection (they are symptoms of it);
- maintenance windows silence fire, remind and escalate; an alert still firing when the
  window closes is sent then;
- a record whose resolution is still being delivered blocks a new incarnation of the same
  alert until it is gone, so every Slack message belongs to exactly one record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from monitor.model import AlertRecord, State
from monitor.notify.catalog import (
    DETAIL_MAX,
    SEVERITY_RANK,
    Action,
    AlertName,
    AlertSubject,
    Notification,
    Severity,
)
from monitor.notify.maintenance import MaintenanceWindow, quiet_until

_QuietFn = Callable[[], float | None]


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    failure_threshold: int = 3
    success_threshold: int = 2
    reminder_interval: float = 14_400.0
    send_resolved: bool = True
    refresh_expiry_warning: float = 604_800.0
    refresh_expiry_critical: float = 86_400.0
    group_threshold: int = 5
    group_window: float = 60.0
    rate_limited_for: float = 900.0
    maintenance: tuple[MaintenanceWindow, ...] = ()


class Muted(StrEnum):
    MAINTENANCE = "maintenance"
    INHIBITED = "inhibited"


@dataclass(frozen=True, slots=True)
class Change:
    """One alert's new record (None: delete it) and what to tell people about it.

    The record and the notification go together: if the notification cannot be accepted
    (a full queue), the record must stay as it was so the next evaluation tries again."""

    alert: AlertName
    record: AlertRecord | None
    notification: Notification | None = None
    muted: Muted | None = None  # set when an alert starts firing without a notification


@dataclass(frozen=True, slots=True)
class Decision:
    changes: tuple[Change, ...] = ()
    next_check: float | None = None  # when time alone may change the decision

    @property
    def notifications(self) -> list[Notification]:
        return [c.notification for c in self.changes if c.notification is not None]

    @property
    def records(self) -> list[AlertRecord]:
        return [c.record for c in self.changes if c.record is not None]

    @property
    def deleted(self) -> list[AlertName]:
        return [c.alert for c in self.changes if c.record is None]


@dataclass(frozen=True, slots=True)
class _Condition:
    active: bool  # the problem is there now
    cleared: bool  # the evidence to resolve is in
    severity: Severity
    since: float
    wake: float | None = None  # when time alone may change `active` or `severity`


INHIBITED_BY_CREDENTIALS = frozenset(
    {AlertName.PROBE_FAILING, AlertName.FORBIDDEN, AlertName.REFRESH_EXPIRING}
)

# Credentials first: whether it fires decides the inhibition of the others.
ORDER = (
    AlertName.CREDENTIALS_EXPIRED,
    AlertName.REFRESH_EXPIRING,
    AlertName.PROBE_FAILING,
    AlertName.FORBIDDEN,
    AlertName.RATE_LIMITED,
    AlertName.HIBERNATING,
)


def evaluate(
    records: Mapping[str, AlertRecord], subject: AlertSubject, now: float, policy: AlertPolicy
) -> Decision:
    changes: list[Change] = []
    wake: float | None = None
    quiet: list[float | None] = []  # computed once, only when a notification is at stake

    def maintenance_until() -> float | None:
        if not quiet:
            quiet.append(quiet_until(policy.maintenance, subject.info, now))
        return quiet[0]

    credentials_firing = False
    for alert in ORDER:
        record = records.get(alert.value)
        cond = _condition(alert, subject, now, policy)
        inhibited = alert in INHIBITED_BY_CREDENTIALS and credentials_firing
        change, next_check = _step(
            alert, record, cond, subject, now, policy, inhibited, maintenance_until
        )
        if change is not None:
            changes.append(change)
            record = change.record
        if alert is AlertName.CREDENTIALS_EXPIRED:
            credentials_firing = record is not None and record.resolved_at is None
        wake = _earliest(wake, next_check)
    return Decision(tuple(changes), wake)


def _condition(
    alert: AlertName, subject: AlertSubject, now: float, policy: AlertPolicy
) -> _Condition:
    h = subject.health
    if alert is AlertName.CREDENTIALS_EXPIRED:
        active = h.state is State.CREDENTIALS_EXPIRED
        accepted = h.consecutive_successes >= 1 or h.state is State.FORBIDDEN
        return _Condition(active, not active and accepted, Severity.CRITICAL, h.since)
    if alert is AlertName.REFRESH_EXPIRING:
        return _refresh_expiring(subject, now, policy)
    if alert is AlertName.RATE_LIMITED:
        limited = h.state is State.RATE_LIMITED
        sustained_at = h.since + policy.rate_limited_for
        return _Condition(
            active=limited and now >= sustained_at,
            cleared=not limited and h.consecutive_successes >= policy.success_threshold,
            severity=Severity.WARNING,
            since=h.since,
            wake=sustained_at if limited and now < sustained_at else None,
        )
    state, severity = _PROBE_DRIVEN[alert]
    active = h.state is state
    if alert is AlertName.FORBIDDEN:
        # One 403 can be an ACL change being rolled out: wait for as many as for failing.
        active = active and h.consecutive_failures >= policy.failure_threshold
    cleared = h.state is not state and h.consecutive_successes >= policy.success_threshold
    return _Condition(active, cleared, severity, h.since)


_PROBE_DRIVEN = {
    AlertName.PROBE_FAILING: (State.FAILING, Severity.WARNING),
    AlertName.FORBIDDEN: (State.FORBIDDEN, Severity.WARNING),
    AlertName.HIBERNATING: (State.HIBERNATING, Severity.INFO),
}


def _refresh_expiring(subject: AlertSubject, now: float, policy: AlertPolicy) -> _Condition:
    expires = subject.refresh_expires_at
    if subject.can_renew_refresh:
        # The grant mints a new refresh token by itself: nothing for a person to do.
        return _Condition(False, True, Severity.WARNING, now)
    if expires is None:
        # Unknown (no tokens yet, or they were deleted): neither fire nor resolve.
        return _Condition(False, False, Severity.WARNING, now)
    warn_at = expires - policy.refresh_expiry_warning
    critical_at = expires - policy.refresh_expiry_critical
    active = now >= warn_at
    severity = Severity.CRITICAL if now >= critical_at else Severity.WARNING
    wake = warn_at if now < warn_at else critical_at if now < critical_at else None
    return _Condition(active, not active, severity, now, wake)


def _step(
    alert: AlertName,
    record: AlertRecord | None,
    cond: _Condition,
    subject: AlertSubject,
    now: float,
    policy: AlertPolicy,
    inhibited: bool,
    maintenance_until: _QuietFn,
) -> tuple[Change | None, float | None]:
    if record is not None and record.resolved_at is not None:
        return None, None  # its resolution is on the way; a new incarnation waits for it
    if record is None:
        if not cond.active:
            return None, cond.wake
        new = AlertRecord(
            connection_id=subject.info.id,
            alert=alert.value,
            firing_since=cond.since,
            severity=cond.severity.value,
        )
        muted, until = _muted(inhibited, maintenance_until)
        if muted is not None:
            muted_record = replace(new, extra={"muted": muted.value})
            return Change(alert, muted_record, muted=muted), _earliest(cond.wake, until)
        return _notify(Action.FIRE, new, subject, now, policy, cond.wake)

    if cond.cleared:
        if record.last_notified_at is None or not policy.send_resolved:
            return Change(alert, None), cond.wake
        resolved = replace(record, resolved_at=now)
        return Change(alert, resolved, _note(Action.RESOLVE, resolved, subject, now)), None
    if not cond.active:
        return None, cond.wake  # recovering, or the state moved on: no news either way

    previous = Severity(record.severity)
    raised = SEVERITY_RANK[cond.severity] < SEVERITY_RANK[previous]
    current = replace(record, severity=cond.severity.value) if raised else record
    muted, until = _muted(inhibited, maintenance_until)
    if muted is not None:
        # Quiet, but the record keeps up with the severity so the late message is right.
        return (Change(alert, current) if raised else None), _earliest(cond.wake, until)
    if record.last_notified_at is None:
        return _notify(Action.FIRE, current, subject, now, policy, cond.wake)
    if raised:
        return _notify(Action.ESCALATE, current, subject, now, policy, cond.wake, previous)
    due = record.last_notified_at + policy.reminder_interval
    if now >= due:
        return _notify(Action.REMIND, current, subject, now, policy, cond.wake)
    return None, _earliest(cond.wake, due)


def _muted(inhibited: bool, maintenance_until: _QuietFn) -> tuple[Muted | None, float | None]:
    if inhibited:
        return Muted.INHIBITED, None  # lifted by an observation, never by the clock
    until = maintenance_until()
    if until is not None:
        return Muted.MAINTENANCE, until
    return None, None


def _notify(
    action: Action,
    record: AlertRecord,
    subject: AlertSubject,
    now: float,
    policy: AlertPolicy,
    wake: float | None,
    previous: Severity | None = None,
) -> tuple[Change, float | None]:
    extra = {k: v for k, v in record.extra.items() if k != "muted"}
    stamped = replace(record, last_notified_at=now, extra=extra)
    note = _note(action, stamped, subject, now, previous)
    return Change(AlertName(record.alert), stamped, note), _earliest(
        wake, now + policy.reminder_interval
    )


def _note(
    action: Action,
    record: AlertRecord,
    subject: AlertSubject,
    now: float,
    previous: Severity | None = None,
) -> Notification:
    h = subject.health
    return Notification(
        action=action,
        alert=AlertName(record.alert),
        severity=Severity(record.severity),
        connection_id=subject.info.id,
        instance_url=subject.info.instance_url,
        grant=subject.info.grant,
        state=h.state,
        state_since=h.since,
        firing_since=record.firing_since,
        at=now,
        reason=h.last_reason,
        detail=h.last_error[:DETAIL_MAX],
        consecutive_failures=h.consecutive_failures,
        refresh_expires_at=subject.refresh_expires_at,
        previous_severity=previous,
        labels=dict(subject.info.labels),
    )


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


# -- grouping ------------------------------------------------------------------------------


class Grouping(StrEnum):
    SINGLE = "single"  # a message of its own
    JOIN = "join"  # into the channel's open group
    OPEN = "open"  # a new group for the channel


def group_mode(
    recent_fires: int, open_since: float | None, now: float, policy: AlertPolicy
) -> Grouping:
    """How a new alert in a channel is sent. `recent_fires` counts the alerts that fired
    in that channel within the last `group_window` (grouped or not); `open_since` is when
    the channel's latest group opened. A group takes members for `group_window` after it
    opened, so a long outage makes a handful of groups, not one that never ends.
    A `group_window` of 0 turns grouping off."""
    if policy.group_window <= 0:
        return Grouping.SINGLE
    if open_since is not None and now < open_since + policy.group_window:
        return Grouping.JOIN
    if recent_fires >= policy.group_threshold:
        return Grouping.OPEN
    return Grouping.SINGLE


def group_reminder_due(last_reminded: float, now: float, policy: AlertPolicy) -> bool:
    """Members of a group come due for a reminder within one window of each other: the
    first one reminds for the group, the others are absorbed."""
    return now - last_reminded >= policy.reminder_interval / 2
