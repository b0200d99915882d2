"""Maintenance windows and routing: which times and which connections they cover."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from monitor.notify.catalog import AlertName
from monitor.notify.maintenance import MaintenanceWindow, matches, quiet_until
from monitor.notify.routing import Links, Route, Router
from tests.notify.subjects import HOUR, info

BERLIN = ZoneInfo("Europe/Berlin")
SAT, SUN = 5, 6


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


WEEKEND_NIGHT = MaintenanceWindow(
    {"customer": "acme"}, time(23, 0), 4 * HOUR, frozenset({SAT}), BERLIN
)
DAILY_UTC = MaintenanceWindow({"connection": "acme-prod"}, time(2, 0), HOUR)


@pytest.mark.parametrize(
    ("window", "now", "until"),
    [
        # Saturday 2027-01-16 23:00 Berlin is 22:00 UTC; four hours run into Sunday.
        (WEEKEND_NIGHT, "2027-01-16T21:59:59", None),
        (WEEKEND_NIGHT, "2027-01-16T22:00:00", "2027-01-17T02:00:00"),
        (WEEKEND_NIGHT, "2027-01-17T01:59:59", "2027-01-17T02:00:00"),
        (WEEKEND_NIGHT, "2027-01-17T02:00:00", None),
        (WEEKEND_NIGHT, "2027-01-17T22:30:00", None),  # Sunday 23:30: not a window day
        # Summer time: 23:00 Berlin is 21:00 UTC.
        (WEEKEND_NIGHT, "2027-07-17T21:00:00", "2027-07-18T01:00:00"),
        (DAILY_UTC, "2027-01-15T02:30:00", "2027-01-15T03:00:00"),
        (DAILY_UTC, "2027-01-15T03:00:00", None),
    ],
)
def test_open_until(window: MaintenanceWindow, now: str, until: str | None) -> None:
    assert window.open_until(at(now)) == (at(until) if until else None)


def test_quiet_until_takes_the_latest_end_of_matching_windows() -> None:
    longer = MaintenanceWindow({"customer": "acme"}, time(1, 30), 3 * HOUR)
    other = MaintenanceWindow({"customer": "globex"}, time(0, 0), 24 * HOUR)
    now = at("2027-01-15T02:30:00")
    assert quiet_until([DAILY_UTC, longer, other], info(), now) == at("2027-01-15T04:30:00")
    assert quiet_until([other], info(), now) is None


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ({"customer": "acme"}, True),
        ({"customer": "acme", "environment": "prod"}, True),
        ({"customer": "acme", "environment": "dev"}, False),
        ({"connection": "acme-prod"}, True),
        ({"connection": "acme-dev"}, False),
        ({"team": "itsm"}, False),  # a label the connection does not have
    ],
)
def test_matches(match: dict[str, str], expected: bool) -> None:
    assert matches(match, info(environment="prod")) is expected


def test_router_order_connection_then_first_route_then_default() -> None:
    router = Router(
        "#snowmon-alerts",
        [
            Route({"customer": "acme"}, "#acme-integrations"),
            Route({"environment": "prod"}, "#prod"),
        ],
    )
    assert router.channel_for(info(channel="#mine")) == "#mine"
    assert router.channel_for(info(environment="prod")) == "#acme-integrations"
    assert router.channel_for(info("globex-prod", customer="globex", environment="prod")) == "#prod"
    assert router.channel_for(info("globex-dev", customer="globex")) == "#snowmon-alerts"


def test_links() -> None:
    links = Links("https://snowmon.example.net", "https://snowmon.example/runbooks")
    assert links.connection("acme-prod") == "https://snowmon.example.net/?connection=acme-prod"
    assert links.reauthorize("acme-prod") == "https://snowmon.example.net/connect/acme-prod"
    assert links.status_page() == "https://snowmon.example.net/"
    assert (
        links.runbook(AlertName.CREDENTIALS_EXPIRED)
        == "https://snowmon.example/runbooks#credentials-expired"
    )
    empty = Links()
    assert (empty.connection("x"), empty.reauthorize("x"), empty.status_page()) == ("", "", "")
    assert empty.runbook(AlertName.PROBE_FAILING) == ""
