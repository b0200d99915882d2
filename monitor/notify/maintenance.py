"""Maintenance windows and label matching: when a connection's alerts stay quiet.

A window opens at `start` wall time in `timezone` on each of `weekdays` (every day when
empty) and stays open `duration` seconds, possibly past midnight: it belongs to the day it
opens on. Pure: every answer is a function of the window, the connection and `now`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from monitor.model import ConnectionInfo

CONNECTION_KEY: Final = "connection"
MAX_DURATION: Final = 7 * 86400.0


def matches(match: Mapping[str, str], info: ConnectionInfo) -> bool:
    """Every key must equal: `connection` the id, any other key the label of that name."""
    for key, wanted in match.items():
        actual = info.id if key == CONNECTION_KEY else info.labels.get(key)
        if actual != wanted:
            return False
    return True


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    match: Mapping[str, str]
    start: time
    duration: float
    weekdays: frozenset[int] = frozenset()  # 0 = Monday, like datetime.weekday()
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def open_until(self, now: float) -> float | None:
        """The end of the occurrence that covers `now`, or None when closed. The start
        is wall time, so across a DST change the window still opens at "02:00"."""
        today = datetime.fromtimestamp(now, UTC).astimezone(self.timezone).date()
        # An occurrence that opened up to MAX_DURATION ago may still be open.
        latest: float | None = None
        for days_back in range(int(MAX_DURATION // 86400) + 2):
            day = today - timedelta(days=days_back)
            if self.weekdays and day.weekday() not in self.weekdays:
                continue
            opened = _local(day, self.start, self.timezone)
            closes = opened + min(self.duration, MAX_DURATION)
            if opened <= now < closes and (latest is None or closes > latest):
                latest = closes
        return latest


def quiet_until(
    windows: Sequence[MaintenanceWindow], info: ConnectionInfo, now: float
) -> float | None:
    """When the last open window of `info` closes, or None when none is open."""
    until: float | None = None
    for window in windows:
        if not matches(window.match, info):
            continue
        closes = window.open_until(now)
        if closes is not None and (until is None or closes > until):
            until = closes
    return until


def _local(day: date, start: time, zone: ZoneInfo) -> float:
    return datetime.combine(day, start, tzinfo=zone).timestamp()
