"""From configuration to alerting parts: the `[slack]` and `[alerts]` sections as the
policy, router, links and sender that `Alerting` takes. The daemon stays the one place
that builds and runs things; this only translates.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from opentelemetry import trace

from monitor.clock import Clock
from monitor.config_alerts import AlertsConfig, SlackConfig
from monitor.notify.maintenance import MaintenanceWindow
from monitor.notify.routing import Links, Route, Router
from monitor.notify.rules import AlertPolicy
from monitor.notify.service import Alerting
from monitor.notify.slack import Sender, bot_sender, webhook_sender
from monitor.store import Store


def policy_from_config(alerts: AlertsConfig) -> AlertPolicy:
    return AlertPolicy(
        failure_threshold=alerts.failure_threshold,
        success_threshold=alerts.success_threshold,
        reminder_interval=alerts.reminder_interval,
        send_resolved=alerts.send_resolved,
        refresh_expiry_warning=alerts.refresh_expiry_warning,
        refresh_expiry_critical=alerts.refresh_expiry_critical,
        group_threshold=alerts.group_threshold,
        group_window=alerts.group_window,
        maintenance=tuple(
            MaintenanceWindow(
                match=dict(w.match),
                start=w.start,
                duration=w.duration,
                weekdays=frozenset(int(d) for d in w.weekdays),
                timezone=w.timezone,
            )
            for w in alerts.maintenance
        ),
    )


def router_from_config(slack: SlackConfig) -> Router:
    return Router(slack.default_channel, [Route(dict(r.match), r.channel) for r in slack.routes])


def sender_from_config(slack: SlackConfig, session: aiohttp.ClientSession) -> Sender | None:
    """None when Slack is off: alert state is still kept, messages are counted as
    suppressed."""
    if not slack.enabled:
        return None
    if slack.mode == "webhook":
        if slack.webhook_url is None:
            return None
        return webhook_sender(slack.webhook_url, session=session)
    if slack.bot_token is None:
        return None
    return bot_sender(slack.bot_token, session=session, base_url=slack.base_url)


def build_alerting(
    *,
    slack: SlackConfig,
    alerts: AlertsConfig,
    public_url: str,
    store: Store,
    clock: Clock,
    session: aiohttp.ClientSession,
    on_result: Callable[[str], None] | None = None,
    tracer: trace.Tracer | None = None,
) -> Alerting:
    return Alerting(
        policy=policy_from_config(alerts),
        router=router_from_config(slack),
        store=store,
        sender=sender_from_config(slack, session),
        clock=clock,
        links=Links(public_url, alerts.runbook_url),
        on_result=on_result,
        queue_size=slack.queue_size,
        tracer=tracer,
    )
