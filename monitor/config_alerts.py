"""Alerting settings: `[slack]` (where messages go) and `[alerts]` (when they fire, and
when they stay quiet: maintenance windows).

Slack routes and maintenance windows pick connections the same way, by a `match` table
of labels plus the pseudo-label `connection` (the connection id); `matches` is the one
implementation both use.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from monitor.config_fields import (
    UNRESOLVED,
    ConfigModel,
    SecretValue,
    between,
    check_http_url,
    http_url,
    matching,
)
from monitor.config_rules import Rule, raise_rules
from monitor.model import ConnectionInfo
from monitor.secret import Secret

CONNECTION_KEY: Final = "connection"

MatchKey = Annotated[
    str, matching(r"[a-zA-Z_][a-zA-Z0-9_]{0,62}", "a label name, or connection for the id")
]


def _not_empty(match: dict[str, str]) -> dict[str, str]:
    # An empty match is everything: a mistake for a route (default_channel is the
    # catch-all) and a fleet-wide mute for a maintenance window.
    if not match:
        raise ValueError("must name at least one label (or connection)")
    return match


class LabelMatch(ConfigModel):
    match: Annotated[dict[MatchKey, str], AfterValidator(_not_empty)]

    def matches(self, info: ConnectionInfo) -> bool:
        """Every key must equal: `connection` the id, any other key that label."""
        for key, wanted in self.match.items():
            actual = info.id if key == CONNECTION_KEY else info.labels.get(key)
            if actual != wanted:
                return False
        return True


class SlackRoute(LabelMatch):
    channel: Annotated[str, matching(r"\S{1,80}", "a channel like #team-alerts or C0123456")]


def _slack_webhook(value: Secret) -> Secret:
    if value is UNRESOLVED:
        return value
    check_http_url(value.reveal(), https_off_loopback=True)
    return value


class SlackConfig(ConfigModel):
    enabled: bool = False
    mode: Literal["bot", "webhook"] = "bot"
    bot_token: SecretValue | None = None
    webhook_url: Annotated[SecretValue, AfterValidator(_slack_webhook)] | None = None
    default_channel: str = ""
    base_url: Annotated[str, http_url(https_off_loopback=True)] = "https://slack.com/api/"
    queue_size: Annotated[int, between(1, 1_000_000)] = 1000
    routes: list[SlackRoute] = Field(default_factory=list)

    @field_validator("base_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # slack-sdk appends the method name ("chat.postMessage") to the base URL.
        return value if value.endswith("/") else f"{value}/"

    @model_validator(mode="after")
    def _credentials_for_mode(self) -> SlackConfig:
        if not self.enabled:
            return self
        rules: list[Rule] = []
        if self.mode == "bot":
            if self.bot_token is None:
                rules.append(("bot_token", 'required when slack is enabled in mode "bot"'))
            if not self.default_channel:
                rules.append(("default_channel", 'required when slack is enabled in mode "bot"'))
        elif self.webhook_url is None:
            rules.append(("webhook_url", 'required when slack is enabled in mode "webhook"'))
        raise_rules(rules)
        return self


class Weekday(IntEnum):
    """Numbered like `datetime.weekday()`: Monday is 0."""

    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6


def _weekdays(value: object) -> frozenset[Weekday]:
    if not isinstance(value, list | tuple | frozenset | set):
        raise ValueError('must be a list like ["sat", "sun"]')  # noqa: TRY004
    days = set()
    for item in value:
        if isinstance(item, Weekday):
            days.add(item)
        elif isinstance(item, str) and item.upper() in Weekday.__members__:
            days.add(Weekday[item.upper()])
        else:
            raise ValueError("must list days as mon, tue, wed, thu, fri, sat, sun")
    return frozenset(days)


def _start(value: object) -> time:
    if isinstance(value, time):
        return value
    message = 'must be a time of day as "HH:MM", like "02:00"'
    if not isinstance(value, str) or len(value) != 5:
        raise ValueError(message)
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise ValueError(message) from None


def _timezone(value: object) -> ZoneInfo:
    if isinstance(value, ZoneInfo):
        return value
    message = "must be an IANA time zone like Europe/Berlin or UTC"
    if not isinstance(value, str) or not value:
        raise ValueError(message)
    try:
        return ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(message) from None


MAX_WINDOW: Final = 7 * 86400.0


class MaintenanceWindow(LabelMatch):
    """Alerts of matching connections stay quiet from `start` (local time in `timezone`)
    for `duration` seconds, on each of `weekdays` (every day when empty)."""

    start: Annotated[time, BeforeValidator(_start)]
    duration: Annotated[float, between(60.0, MAX_WINDOW, "seconds (7 days)")]
    weekdays: Annotated[frozenset[Weekday], BeforeValidator(_weekdays)] = frozenset()
    timezone: Annotated[ZoneInfo, BeforeValidator(_timezone)] = ZoneInfo("UTC")

    def active_at(self, when: float) -> bool:
        """True if a window that started on an allowed weekday covers `when`. The start
        is wall time, so across a DST change the window still opens at "02:00"."""
        today = datetime.fromtimestamp(when, UTC).astimezone(self.timezone).date()
        # A window started up to MAX_WINDOW ago may still be open, hence the look-back.
        for days_back in range(int(MAX_WINDOW // 86400) + 2):
            day = today - timedelta(days=days_back)
            if self.weekdays and Weekday(day.weekday()) not in self.weekdays:
                continue
            opened = _local(day, self.start, self.timezone)
            if opened <= when < opened + self.duration:
                return True
        return False


def _local(day: date, start: time, zone: ZoneInfo) -> float:
    return datetime.combine(day, start, tzinfo=zone).timestamp()


class AlertsConfig(ConfigModel):
    failure_threshold: Annotated[int, between(1, 1000)] = 3
    success_threshold: Annotated[int, between(1, 1000)] = 2
    reminder_interval: Annotated[float, between(60.0, 30 * 86400.0, "seconds")] = 14_400.0
    send_resolved: bool = True
    refresh_expiry_warning: Annotated[float, between(0.0, 365 * 86400.0, "seconds")] = 604_800.0
    refresh_expiry_critical: Annotated[float, between(0.0, 365 * 86400.0, "seconds")] = 86_400.0
    group_threshold: Annotated[int, between(1, 100_000)] = 5
    group_window: Annotated[float, between(0.0, 3600.0, "seconds")] = 60.0
    runbook_url: Annotated[str, http_url(https_off_loopback=False, allow_empty=True)] = ""
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)

    @model_validator(mode="after")
    def _warning_before_critical(self) -> AlertsConfig:
        if self.refresh_expiry_warning <= self.refresh_expiry_critical:
            raise_rules(
                [
                    (
                        "refresh_expiry_warning",
                        "must be longer than refresh_expiry_critical "
                        f"({self.refresh_expiry_critical:g} s)",
                    )
                ]
            )
        return self
