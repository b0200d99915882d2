"""Per-connection gauges: the few series that carry a `connection` label.

A fleet of 100,000 connections would need 700,000 prometheus_client children (each with
its own lock and value object) for these gauges. Instead one slotted row per connection
holds plain floats, written on the hot path without locks, and a custom collector turns
the rows into metric families at scrape time. `snowmon_connection_state` exists only for
a connection's current state, so a state change drops the old series by construction.

Scrapes may run in another thread: `collect` iterates over a snapshot of the rows, and a
row written while it is read shows either the old or the new value of each field.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class ConnectionRow:
    """The last known values of one connection's gauges; None = series absent."""

    __slots__ = (
        "access_expiry",
        "probe_duration",
        "probe_status",
        "probe_success",
        "refresh_expiry",
        "state",
        "state_since",
    )

    def __init__(self) -> None:
        self.probe_success: float | None = None
        self.probe_duration: float | None = None
        self.probe_status: float | None = None
        self.access_expiry: float | None = None
        self.refresh_expiry: float | None = None
        self.state: str | None = None
        self.state_since: float | None = None


# (metric name, help, row attribute)
_GAUGES: tuple[tuple[str, str, str], ...] = (
    (
        "snowmon_probe_success",
        "Whether the last probe of the connection succeeded (1) or not (0).",
        "probe_success",
    ),
    (
        "snowmon_probe_duration_seconds",
        "Duration of the last probe of the connection.",
        "probe_duration",
    ),
    (
        "snowmon_probe_http_status_code",
        "HTTP status code of the last probe response, 0 when none was received.",
        "probe_status",
    ),
    (
        "snowmon_access_token_expiry_timestamp_seconds",
        "When the connection's current access token expires (UNIX time).",
        "access_expiry",
    ),
    (
        "snowmon_refresh_token_expiry_timestamp_seconds",
        "When the connection's current refresh token expires (UNIX time).",
        "refresh_expiry",
    ),
    (
        "snowmon_connection_state_since_timestamp_seconds",
        "When the connection entered its current health state (UNIX time).",
        "state_since",
    ),
)

STATE_METRIC = "snowmon_connection_state"
_STATE_HELP = "The connection's current health state: 1 for the current state only."


class ConnectionSeries(Collector):
    """Owns the rows; `Metrics` writes them, a registry scrape reads them."""

    def __init__(self) -> None:
        self.rows: dict[str, ConnectionRow] = {}

    def row(self, connection_id: str) -> ConnectionRow:
        row = self.rows.get(connection_id)
        if row is None:
            row = self.rows[connection_id] = ConnectionRow()
        return row

    def forget(self, connection_id: str) -> None:
        self.rows.pop(connection_id, None)

    def describe(self) -> Iterable[Metric]:
        for name, help_text, _ in _GAUGES:
            yield GaugeMetricFamily(name, help_text, labels=["connection"])
        yield GaugeMetricFamily(STATE_METRIC, _STATE_HELP, labels=["connection", "state"])

    def collect(self) -> Iterator[Metric]:
        rows = list(self.rows.items())
        for name, help_text, attr in _GAUGES:
            family = GaugeMetricFamily(name, help_text, labels=["connection"])
            for cid, row in rows:
                value = getattr(row, attr)
                if value is not None:
                    family.add_metric((cid,), value)
            yield family
        state = GaugeMetricFamily(STATE_METRIC, _STATE_HELP, labels=["connection", "state"])
        for cid, row in rows:
            current = row.state
            if current is not None:
                state.add_metric((cid, current), 1.0)
        yield state
