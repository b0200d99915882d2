"""Values with every field set, so a round trip that drops or mangles one shows."""

from __future__ import annotations

from monitor.model import AlertRecord, Grant, Health, HistoryEntry, HistoryKind, State, TokenSet
from monitor.secret import Secret

T0 = 1_800_000_000.0


def full_tokens(tag: str = "a", *, at: float = T0) -> TokenSet:
    return TokenSet(
        access_token=Secret(f"ACCESS-{tag}-4f9c2d7e1b"),
        access_expires_at=at + 1800.25,
        obtained_at=at,
        refresh_token=Secret(f"REFRESH-{tag}-8a3e5b0c6d"),
        refresh_issued_at=at - 60.5,
        refresh_expires_at=at + 100 * 86400.0,
        scope="useraccount snc_platform_rest_api_access",
        grant=Grant.AUTHORIZATION_CODE,
    )


def bare_tokens(tag: str = "b", *, at: float = T0) -> TokenSet:
    """client_credentials: no refresh token at all."""
    return TokenSet(
        access_token=Secret(f"ACCESS-{tag}-only"),
        access_expires_at=at + 60.0,
        obtained_at=at,
        grant=Grant.CLIENT_CREDENTIALS,
    )


def full_health(n: int = 0) -> Health:
    return Health(
        state=State.CREDENTIALS_EXPIRED,
        since=T0 + n,
        consecutive_failures=3 + n,
        consecutive_successes=1,
        last_reason="auth_rejected",
        last_error='401 {"error":"access_denied"} ünïcode',
        last_probe_at=T0 + n + 0.5,
        last_probe_reason="auth_rejected",
        last_probe_duration=0.125,
        last_probe_status=401,
        rejections=2,
        first_rejection_at=T0 - 30.0,
    )


def full_alert(connection_id: str = "c1", alert: str = "credentials_expired") -> AlertRecord:
    return AlertRecord(
        connection_id=connection_id,
        alert=alert,
        firing_since=T0,
        severity="critical",
        last_notified_at=T0 + 10.0,
        resolved_at=T0 + 20.0,
        channel="#snow-alerts",
        message_ts="1800000000.000100",
        extra={"group": "emea", "ticket": "INC0010001"},
    )


def history_entry(connection_id: str, n: int) -> HistoryEntry:
    kinds = list(HistoryKind)
    return HistoryEntry(
        connection_id=connection_id,
        at=T0 + n,
        kind=kinds[n % len(kinds)],
        outcome=f"outcome-{n}",
        detail=f"detail {n}",
        duration=None if n % 2 else n / 8,
        status=None if n % 3 else 200 + n,
    )
