"""From `[slack]` and `[alerts]` config to a message in (fake) Slack."""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo

import aiohttp

from monitor.clock import ManualClock
from monitor.config_alerts import AlertsConfig, SlackConfig
from monitor.notify.maintenance import MaintenanceWindow
from monitor.notify.routing import Route
from monitor.notify.slack import BotSender, WebhookSender
from monitor.notify.wiring import (
    build_alerting,
    policy_from_config,
    router_from_config,
    sender_from_config,
)
from monitor.secret import Secret
from monitor.store.memory import MemoryStore
from tests.fakes.slack_api import TOKEN, FakeSlack
from tests.notify.harness import Run, running
from tests.notify.subjects import T0, expired

ALERTS = AlertsConfig.model_validate(
    {
        "failure_threshold": 4,
        "reminder_interval": 3600.0,
        "send_resolved": False,
        "group_threshold": 9,
        "runbook_url": "https://snowmon.example/runbooks",
        "maintenance": [
            {
                "match": {"connection": "acme-prod"},
                "start": "02:00",
                "duration": 3600.0,
                "weekdays": ["sat", "sun"],
                "timezone": "Europe/Berlin",
            }
        ],
    }
)


def slack_config(fake: FakeSlack, **overrides: object) -> SlackConfig:
    return SlackConfig.model_validate(
        {
            "enabled": True,
            "bot_token": Secret(TOKEN),
            "webhook_url": Secret(fake.webhook_url),
            "default_channel": "#snowmon-alerts",
            "base_url": fake.base_url,
            "routes": [{"match": {"customer": "acme"}, "channel": "#acme"}],
            **overrides,
        }
    )


def test_policy_from_config() -> None:
    policy = policy_from_config(ALERTS)
    assert (policy.failure_threshold, policy.reminder_interval) == (4, 3600.0)
    assert (policy.send_resolved, policy.group_threshold) == (False, 9)
    assert policy.maintenance == (
        MaintenanceWindow(
            {"connection": "acme-prod"},
            time(2, 0),
            3600.0,
            frozenset({5, 6}),
            ZoneInfo("Europe/Berlin"),
        ),
    )


async def test_router_and_sender_from_config(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    config = slack_config(slack)
    router = router_from_config(config)
    assert router.default_channel == "#snowmon-alerts"
    assert router.routes == (Route({"customer": "acme"}, "#acme"),)
    assert isinstance(sender_from_config(config, session), BotSender)
    webhook = slack_config(slack, mode="webhook")
    assert isinstance(sender_from_config(webhook, session), WebhookSender)
    assert sender_from_config(slack_config(slack, enabled=False), session) is None


async def test_build_alerting_sends_through_the_configured_bot(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock(T0)
    alerting = build_alerting(
        slack=slack_config(slack),
        alerts=ALERTS,
        public_url="https://snowmon.example.net",
        store=MemoryStore(),
        clock=clock,
        session=session,
    )
    run = Run(alerting, clock)
    async with running(run):
        alerting.observe(expired())
        await run.settle()
    (call,) = slack.calls
    assert call.body["channel"] == "#acme"
    assert "https://snowmon.example/runbooks#credentials-expired" in str(call.body["blocks"])
