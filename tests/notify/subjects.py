"""Connections and health snapshots for the alerting tests, built in one line each."""

from __future__ import annotations

from monitor.model import ConnectionInfo, Grant, Health, State
from monitor.notify.catalog import AlertSubject

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC, a Friday
DAY = 86_400.0
HOUR = 3_600.0


def info(
    cid: str = "acme-prod",
    *,
    grant: Grant = Grant.PASSWORD,
    customer: str = "acme",
    channel: str = "",
    **labels: str,
) -> ConnectionInfo:
    all_labels = {"customer": customer, **labels} if customer else dict(labels)
    return ConnectionInfo(
        id=cid,
        instance_url=f"https://{cid}.service-now.com",
        grant=grant,
        labels=all_labels,
        channel=channel,
    )


def subject(
    state: State = State.HEALTHY,
    *,
    since: float = T0,
    failures: int = 0,
    successes: int = 0,
    reason: str = "",
    error: str = "",
    conn: ConnectionInfo | None = None,
    refresh_expires_at: float | None = None,
    can_renew: bool = True,
) -> AlertSubject:
    health = Health(
        state=state,
        since=since,
        consecutive_failures=failures,
        consecutive_successes=successes,
        last_reason=reason,
        last_error=error,
    )
    return AlertSubject(
        info=conn or info(),
        health=health,
        refresh_expires_at=refresh_expires_at,
        can_renew_refresh=can_renew,
    )


def failing(
    since: float = T0, failures: int = 3, conn: ConnectionInfo | None = None
) -> AlertSubject:
    return subject(
        State.FAILING,
        since=since,
        failures=failures,
        reason="timeout",
        error="no answer in 10 s",
        conn=conn,
    )


def expired(since: float = T0, conn: ConnectionInfo | None = None) -> AlertSubject:
    return subject(
        State.CREDENTIALS_EXPIRED,
        since=since,
        failures=2,
        reason="rejected",
        error="server_error: access_denied",
        conn=conn,
    )


def healthy(
    successes: int = 2, since: float = T0, conn: ConnectionInfo | None = None
) -> AlertSubject:
    return subject(State.HEALTHY, since=since, successes=successes, reason="ok", conn=conn)
