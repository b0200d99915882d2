"""Rendering against golden JSON: what people read in Slack, block by block.

Regenerate after an intended change with `SNOWMON_UPDATE_GOLDEN=1 pytest tests/notify`,
then read the diff of `tests/notify/golden/` like any other code change.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from monitor.model import Grant, State
from monitor.notify.catalog import Action, AlertName, Notification, Severity
from monitor.notify.render import (
    GroupMember,
    GroupView,
    duration,
    render,
    render_group,
    render_group_reply,
    render_reply,
)
from monitor.notify.routing import Links
from tests.fakes.slack_api import _check_message
from tests.notify.subjects import DAY, HOUR, T0

GOLDEN = Path(__file__).parent / "golden"
LINKS = Links("https://snowmon.example.net", "https://snowmon.example/runbooks")

EXPIRED = Notification(
    action=Action.FIRE,
    alert=AlertName.CREDENTIALS_EXPIRED,
    severity=Severity.CRITICAL,
    connection_id="acme-prod",
    instance_url="https://acme.service-now.com",
    grant=Grant.AUTHORIZATION_CODE,
    state=State.CREDENTIALS_EXPIRED,
    state_since=T0,
    firing_since=T0,
    at=T0 + 30,
    reason="rejected",
    detail="server_error: access_denied",
    consecutive_failures=2,
    labels={"customer": "acme", "environment": "prod"},
)
FAILING = replace(
    EXPIRED,
    alert=AlertName.PROBE_FAILING,
    severity=Severity.WARNING,
    connection_id="globex-test",
    instance_url="https://globex.service-now.com",
    grant=Grant.PASSWORD,
    state=State.FAILING,
    reason="timeout",
    detail="no answer in 10 s <html>",
    consecutive_failures=3,
    labels={"customer": "Globex & Co"},
)
REFRESH = replace(
    EXPIRED,
    alert=AlertName.REFRESH_EXPIRING,
    severity=Severity.WARNING,
    state=State.HEALTHY,
    reason="ok",
    detail="",
    consecutive_failures=0,
    refresh_expires_at=T0 + 7 * DAY,
)

SINGLES = {
    "expired_fire": EXPIRED,
    "expired_resolve": replace(EXPIRED, action=Action.RESOLVE, at=T0 + 2 * HOUR + 13 * 60),
    "expired_password_no_links": replace(EXPIRED, grant=Grant.PASSWORD),
    "failing_fire": FAILING,
    "failing_remind": replace(FAILING, action=Action.REMIND, at=T0 + 4 * HOUR),
    "refresh_fire": REFRESH,
    "refresh_escalate": replace(
        REFRESH,
        action=Action.ESCALATE,
        severity=Severity.CRITICAL,
        previous_severity=Severity.WARNING,
        at=T0 + 6 * DAY + 60,
    ),
    "forbidden_fire": replace(FAILING, alert=AlertName.FORBIDDEN, state=State.FORBIDDEN),
    "rate_limited_fire": replace(FAILING, alert=AlertName.RATE_LIMITED, state=State.RATE_LIMITED),
    "hibernating_fire": replace(
        FAILING, alert=AlertName.HIBERNATING, severity=Severity.INFO, state=State.HIBERNATING
    ),
}


def members(count: int) -> list[GroupMember]:
    return [
        GroupMember(
            f"fleet-{i:04d}",
            AlertName.CREDENTIALS_EXPIRED if i % 7 == 0 else AlertName.PROBE_FAILING,
            Severity.CRITICAL if i % 7 == 0 else Severity.WARNING,
            T0 + i,
            "acme" if i % 2 else "",
        )
        for i in range(count)
    ]


GROUPS = {
    "group_small": GroupView("#acme-integrations", T0, T0 + 60, members(8), 12, 5, 60.0),
    "group_large": GroupView("#acme-integrations", T0, T0 + 60, members(995), 995, 5, 60.0),
    "group_resolved": GroupView("#acme-integrations", T0, T0 + 3 * HOUR, [], 995, 5, 60.0),
}


def check_golden(name: str, message: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(message, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("SNOWMON_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path.name}: run with SNOWMON_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(SINGLES))
def test_render_golden(name: str) -> None:
    links = Links() if name.endswith("no_links") else LINKS
    message = render(SINGLES[name], links)
    check_golden(name, message)
    assert _check_message(message) == ""


@pytest.mark.parametrize("name", ["expired_resolve", "failing_remind", "refresh_escalate"])
def test_render_reply_golden(name: str) -> None:
    message = render_reply(SINGLES[name])
    check_golden(f"{name}_reply", message)
    assert _check_message(message) == ""


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_render_group_golden(name: str) -> None:
    message = render_group(GROUPS[name], LINKS)
    check_golden(name, message)
    assert _check_message(message) == ""


@pytest.mark.parametrize(
    ("action", "name"), [(Action.REMIND, "remind"), (Action.RESOLVE, "resolve")]
)
def test_render_group_reply_golden(action: Action, name: str) -> None:
    view = GROUPS["group_small" if action is Action.REMIND else "group_resolved"]
    message = render_group_reply(view, action)
    check_golden(f"group_reply_{name}", message)


def test_text_fallback_reads_without_slack_markup() -> None:
    text = render(FAILING, LINKS)["text"]
    assert text == (
        "[WARNING] Probe failing: globex-test (Globex & Co). The last 3 probes failed: "
        "the Table API did not answer in time. ServiceNow said: `no answer in 10 s <html>`"
    )


def test_mrkdwn_escapes_what_servicenow_and_labels_say() -> None:
    blocks = json.dumps(render(FAILING, LINKS)["blocks"])
    assert "Globex &amp; Co" in blocks
    assert "10 s &lt;html&gt;" in blocks
    assert "<html>" not in blocks


def test_reauthorize_link_only_where_a_person_can_reauthorize() -> None:
    def text(n: Notification) -> str:
        return json.dumps(render(n, LINKS))

    assert "https://snowmon.example.net/connect/acme-prod" in text(EXPIRED)
    assert "/connect/" in text(REFRESH)
    assert "/connect/" not in text(replace(EXPIRED, grant=Grant.PASSWORD))
    assert "/connect/" not in text(FAILING)
    assert "https://snowmon.example.net/?connection=globex-test" in text(FAILING)
    assert "https://snowmon.example/runbooks#probe-failing" in text(FAILING)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (45.9, "45 s"),
        (60, "1 min"),
        (61, "1 min 1 s"),
        (2 * HOUR + 13 * 60 + 5, "2 h 13 min"),
        (3 * HOUR, "3 h"),
        (3 * DAY + 4 * HOUR + 59, "3 d 4 h"),
        (DAY, "1 d"),
        (-5, "0 s"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text
