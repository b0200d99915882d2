"""Slack alerts: when a connection's credentials expire (or its probes fail, or it is
forbidden, rate limited, hibernating, or its refresh token is about to die), the people
who own it hear about it once, in the right channel, with what to do next.

- `rules` decides (pure): fire, remind, escalate, resolve, inhibit, maintenance, grouping;
- `render` writes the Block Kit message (pure, golden-tested);
- `slack` sends it (bot token or incoming webhook, over slack-sdk);
- `service.Alerting` ties them together without ever blocking monitoring, with the alert
  state and an outbox in the store so a restart neither repeats nor forgets an alert;
- `wiring` turns the `[slack]` and `[alerts]` config sections into those parts.

Nothing is re-exported here, so importing the pure `rules` does not load slack-sdk.
"""
