"""Maintenance windows and label matching, as configured in [alerts] and [slack]."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from monitor.config_alerts import MaintenanceWindow, SlackConfig, SlackRoute, Weekday
from monitor.model import ConnectionInfo, Grant

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: ZoneInfo = BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def window(**fields: object) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate({"match": {"customer": "acme"}, **fields})


SATURDAY_NIGHT = window(
    start="23:00", duration=4 * 3600.0, weekdays=["sat"], timezone="Europe/Berlin"
)


@pytest.mark.parametrize(
    ("local", "active"),
    [
        ("2024-06-15 22:59:59", False),  # Saturday, before the start
        ("2024-06-15 23:00:00", True),
        ("2024-06-16 02:59:59", True),  # Sunday: the window began on Saturday
        ("2024-06-16 03:00:00", False),
        ("2024-06-14 23:30:00", False),  # Friday is not a window day
        ("2024-06-16 23:30:00", False),  # nor is Sunday
        ("2024-06-22 23:30:00", True),  # the next Saturday
    ],
)
def test_window_belongs_to_the_weekday_it_starts_on(local: str, active: bool) -> None:
    assert SATURDAY_NIGHT.active_at(at(local)) is active


def test_start_is_wall_time_across_daylight_saving() -> None:
    nightly = window(start="02:00", duration=3600.0, timezone="Europe/Berlin")
    utc = ZoneInfo("UTC")
    assert nightly.active_at(at("2024-01-10 01:30", utc))  # CET: 02:30 local
    assert not nightly.active_at(at("2024-01-10 00:30", utc))
    assert nightly.active_at(at("2024-07-10 00:30", utc))  # CEST: 02:30 local
    assert not nightly.active_at(at("2024-07-10 01:30", utc))


def test_week_long_window_reaches_its_last_day() -> None:
    week = window(start="00:00", duration=7 * 86400.0, weekdays=["mon"], timezone="UTC")
    utc = ZoneInfo("UTC")
    assert week.active_at(at("2024-06-16 23:59:59", utc))  # Sunday after Monday the 10th
    assert week.active_at(at("2024-06-17 00:00:00", utc))  # the next Monday opens again
    every_day = window(start="12:00", duration=60.0, timezone="UTC")
    assert every_day.weekdays == frozenset()
    assert every_day.active_at(at("2024-06-12 12:00:30", utc))
    assert not every_day.active_at(at("2024-06-12 12:01:00", utc))


def test_weekdays_parse_to_datetime_weekday_numbers() -> None:
    parsed = window(start="00:00", duration=60.0, weekdays=["mon", "SUN", "sun"])
    assert parsed.weekdays == frozenset({Weekday.MON, Weekday.SUN})
    assert datetime(2024, 6, 10).weekday() == Weekday.MON
    assert parsed.timezone.key == "UTC"


def info(conn_id: str, **labels: str) -> ConnectionInfo:
    return ConnectionInfo(
        id=conn_id, instance_url="https://x.service-now.com", grant=Grant.PASSWORD, labels=labels
    )


def test_match_needs_every_key_to_be_equal() -> None:
    route = SlackRoute(match={"customer": "acme", "environment": "prod"}, channel="#acme")
    assert route.matches(info("a", customer="acme", environment="prod", team="itsm"))
    assert not route.matches(info("a", customer="acme", environment="test"))
    assert not route.matches(info("a", customer="acme"))
    by_id = SlackRoute(match={"connection": "acme-prod"}, channel="#acme")
    assert by_id.matches(info("acme-prod"))
    assert not by_id.matches(info("acme-test", connection="acme-prod"))


def test_slack_defaults_and_base_url_slash() -> None:
    slack = SlackConfig.model_validate({"base_url": "https://slack.example/api"})
    assert slack.base_url == "https://slack.example/api/"
    assert not slack.enabled
    with pytest.raises(ValidationError):
        SlackConfig.model_validate({"enabled": True, "mode": "carrier-pigeon"})
