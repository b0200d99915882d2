"""Rendering: the JSON shapes of the status API, as pure functions of model values.

Times are RFC 3339 strings in UTC with milliseconds (`2027-01-15T08:00:00.000Z`), null when
unknown; durations are float seconds in fields ending in `_seconds`. Free text that came
from outside (error details) passes `redact_text` once more on its way out, so a token that
slipped into a message never reaches a client. Tokens themselves are never here: a
`ConnectionStatus` only carries the times derived from them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

from monitor.model import (
    STATE_SEVERITY,
    ConnectionStatus,
    HistoryEntry,
    ProbeResult,
    State,
    TokenResult,
)
from monitor.telemetry.redact import redact_text

Json = dict[str, Any]

# Worst first, as the page and the summary show them.
STATES_WORST_FIRST: Final = tuple(sorted(State, key=STATE_SEVERITY.__getitem__))


def rfc3339(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    try:
        stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return None
    return stamp.replace("+00:00", "Z")


def holder_words(status: ConnectionStatus | None) -> str:
    """Who keeps a connection this process does not: `replica 'b'`, or `another replica`
    while its owner is not known yet."""
    return f"replica {status.owner!r}" if status is not None and status.owner else "another replica"


def connection_json(status: ConnectionStatus) -> Json:
    info, health = status.info, status.health
    last_probe: Json | None = None
    if health.last_probe_at is not None:
        last_probe = {
            "at": rfc3339(health.last_probe_at),
            "reason": health.last_probe_reason,
            "duration_seconds": health.last_probe_duration,
            "status": health.last_probe_status,
        }
    return {
        "id": info.id,
        "instance_url": info.instance_url,
        "grant": info.grant.value,
        "labels": dict(info.labels),
        "state": health.state.value,
        "since": rfc3339(health.since),
        "consecutive_failures": health.consecutive_failures,
        "consecutive_successes": health.consecutive_successes,
        "last_reason": health.last_reason,
        "last_error": redact_text(health.last_error),
        "last_probe": last_probe,
        "access_token_expires_at": rfc3339(status.access_expires_at),
        "refresh_token_expires_at": rfc3339(status.refresh_expires_at),
        "refresh_token_issued_at": rfc3339(status.refresh_issued_at),
        "can_renew_refresh_token": status.can_renew_refresh,
        "next_probe_at": rfc3339(status.next_probe_at),
        "next_refresh_at": rfc3339(status.next_refresh_at),
        "owner": status.owner,
    }


def history_json(entry: HistoryEntry) -> Json:
    return {
        "at": rfc3339(entry.at),
        "kind": entry.kind.value,
        "outcome": entry.outcome,
        "detail": redact_text(entry.detail),
        "duration_seconds": entry.duration,
        "status": entry.status,
    }


def probe_json(result: ProbeResult) -> Json:
    limit = result.rate_limit
    return {
        "ok": result.ok,
        "reason": result.reason.value,
        "started_at": rfc3339(result.started_at),
        "duration_seconds": result.duration,
        "status": result.status,
        "detail": redact_text(result.detail),
        "retry_after_seconds": result.retry_after,
        "rate_limit": None
        if limit is None
        else {"limit": limit.limit, "reset_at": rfc3339(limit.reset_at), "rule": limit.rule},
    }


def token_json(result: TokenResult) -> Json:
    tokens = result.tokens
    return {
        "ok": result.ok,
        "grant": result.grant.value,
        "failure": result.failure.value if result.failure is not None else None,
        "status": result.status,
        "detail": redact_text(result.detail),
        "retry_after_seconds": result.retry_after,
        "started_at": rfc3339(result.started_at),
        "duration_seconds": result.duration,
        "access_token_expires_at": rfc3339(tokens.access_expires_at) if tokens else None,
        "refresh_token_expires_at": rfc3339(tokens.refresh_expires_at) if tokens else None,
        "refresh_token_issued_at": rfc3339(tokens.refresh_issued_at) if tokens else None,
        "scope": tokens.scope if tokens else None,
    }


def expiring_refresh_tokens(
    statuses: Iterable[ConnectionStatus], now: float, within: float
) -> list[ConnectionStatus]:
    """Connections whose refresh token dies within `within` seconds (or already died),
    soonest first, ties by id."""
    soon = [
        s
        for s in statuses
        if s.refresh_expires_at is not None and s.refresh_expires_at - now <= within
    ]
    soon.sort(key=lambda s: (s.refresh_expires_at, s.info.id))
    return soon


def summary_json(statuses: Iterable[ConnectionStatus], now: float, within: float) -> Json:
    """Counts by state (every state present, worst first) and by label (`key → value →
    state → n`, non-zero counts only), and the refresh tokens that die soon."""
    all_statuses = list(statuses)
    by_state = dict.fromkeys((s.value for s in STATES_WORST_FIRST), 0)
    by_label: dict[str, dict[str, dict[str, int]]] = {}
    for status in all_statuses:
        state = status.health.state.value
        by_state[state] += 1
        for key, value in status.info.labels.items():
            counts = by_label.setdefault(key, {}).setdefault(value, {})
            counts[state] = counts.get(state, 0) + 1
    expiring = [
        {
            "id": s.info.id,
            "refresh_token_expires_at": rfc3339(s.refresh_expires_at),
            "seconds_left": round(s.refresh_expires_at - now, 3),
            "can_renew_refresh_token": s.can_renew_refresh,
            "state": s.health.state.value,
        }
        for s in expiring_refresh_tokens(all_statuses, now, within)
        if s.refresh_expires_at is not None
    ]
    return {
        "total": len(all_statuses),
        "by_state": by_state,
        "by_label": by_label,
        "refresh_tokens_expiring": expiring,
        "window_seconds": within,
    }
