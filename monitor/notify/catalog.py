"""The alert catalogue: which alerts exist, how bad each is, what a connection looks like
to alerting (`AlertSubject`), and what a decision hands to delivery (`Notification`).

A `Notification` is a self-contained snapshot: it is written to the outbox as JSON and
rendered after a restart exactly as it would have been before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from monitor.model import ConnectionInfo, ConnectionStatus, Grant, Health, State


class AlertName(StrEnum):
    CREDENTIALS_EXPIRED = "credentials_expired"
    REFRESH_EXPIRING = "refresh_expiring"
    PROBE_FAILING = "probe_failing"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    HIBERNATING = "hibernating"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


# Lower is worse: escalation only ever moves towards 0.
SEVERITY_RANK: Final = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


class Action(StrEnum):
    FIRE = "fire"
    REMIND = "remind"
    ESCALATE = "escalate"
    RESOLVE = "resolve"


TITLES: Final = {
    AlertName.CREDENTIALS_EXPIRED: "Credentials expired",
    AlertName.REFRESH_EXPIRING: "Refresh token expiring",
    AlertName.PROBE_FAILING: "Probe failing",
    AlertName.FORBIDDEN: "Access forbidden",
    AlertName.RATE_LIMITED: "Rate limited",
    AlertName.HIBERNATING: "Instance hibernating",
}

# The runbook has one section per alert: `{runbook_url}#credentials-expired`.
RUNBOOK_ANCHORS: Final = {name: name.value.replace("_", "-") for name in AlertName}

# Health details come from ServiceNow's answers; a runaway HTML page must not become
# a Slack message or a megabyte of outbox.
DETAIL_MAX: Final = 300


@dataclass(frozen=True, slots=True)
class AlertSubject:
    """One connection as alerting sees it, at one health update."""

    info: ConnectionInfo
    health: Health
    refresh_expires_at: float | None = None
    can_renew_refresh: bool = True  # the grant obtains a fresh refresh token by itself

    @classmethod
    def from_status(cls, status: ConnectionStatus) -> AlertSubject:
        return cls(
            info=status.info,
            health=status.health,
            refresh_expires_at=status.refresh_expires_at,
            can_renew_refresh=status.can_renew_refresh,
        )


@dataclass(frozen=True, slots=True)
class Notification:
    """One thing to tell people about one alert of one connection."""

    action: Action
    alert: AlertName
    severity: Severity
    connection_id: str
    instance_url: str
    grant: Grant
    state: State
    state_since: float
    firing_since: float
    at: float
    reason: str = ""  # the health's machine reason ("rejected", "timeout", ...)
    detail: str = ""  # what ServiceNow said, shortened
    consecutive_failures: int = 0
    refresh_expires_at: float | None = None
    previous_severity: Severity | None = None  # set on ESCALATE
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def customer(self) -> str:
        return self.labels.get("customer", "")

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "alert": self.alert.value,
            "severity": self.severity.value,
            "connection_id": self.connection_id,
            "instance_url": self.instance_url,
            "grant": self.grant.value,
            "state": self.state.value,
            "state_since": self.state_since,
            "firing_since": self.firing_since,
            "at": self.at,
            "reason": self.reason,
            "detail": self.detail,
            "consecutive_failures": self.consecutive_failures,
            "refresh_expires_at": self.refresh_expires_at,
            "previous_severity": self.previous_severity.value if self.previous_severity else None,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Notification:
        """Raises KeyError, ValueError or TypeError on a document that is not one."""
        previous = raw.get("previous_severity")
        expires = raw.get("refresh_expires_at")
        return cls(
            action=Action(raw["action"]),
            alert=AlertName(raw["alert"]),
            severity=Severity(raw["severity"]),
            connection_id=str(raw["connection_id"]),
            instance_url=str(raw["instance_url"]),
            grant=Grant(raw["grant"]),
            state=State(raw["state"]),
            state_since=float(raw["state_since"]),
            firing_since=float(raw["firing_since"]),
            at=float(raw["at"]),
            reason=str(raw.get("reason", "")),
            detail=str(raw.get("detail", "")),
            consecutive_failures=int(raw.get("consecutive_failures", 0)),
            refresh_expires_at=None if expires is None else float(expires),
            previous_severity=None if previous is None else Severity(previous),
            labels={str(k): str(v) for k, v in dict(raw.get("labels", {})).items()},
        )
