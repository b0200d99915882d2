"""Per-connection gauges: the few series that carry a `connection` label.

A fleet of 100,000 connections would need 700,000 prometheus_client children (each with
its own lock and value object) for these gauges. Instead one slotted row per connection
holds its values as exposition text, formatted when written (once per probe, token or
state change, not once per scrape), on the hot path without locks. A scrape writes the
rows out as text directly, in chunks (`exposition`, called by
`metrics.render_chunks`), 10-20 x faster than prometheus_client formatting 700,000
samples; other readers of the registry (`get_sample_value`, `generate_latest`) still get
the same families from `collect`.
`snowmon_connection_state` exists only for a connection's current state, so a state
change drops the old series by construction.

Scrapes may run in another thread: they read a snapshot of the rows, and a row written
while it is read shows either the old or the new value of each field.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


def value_text(value: float) -> str:
    """A sample value as prometheus_client writes it in both formats (`1.0`, `+Inf`,
    `NaN`, `1.8e+09`)."""
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


_ONE: str = value_text(1.0)
_ZERO: str = value_text(0.0)


@functools.cache
def _status_text(status: int) -> str:
    """Status codes are few: one string each, shared by all rows."""
    return value_text(float(status))


class ConnectionRow:
    """The last known values of one connection's gauges, as `value_text`, and its health
    state; None = series absent."""

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
        self.probe_success: str | None = None
        self.probe_duration: str | None = None
        self.probe_status: str | None = None
        self.access_expiry: str | None = None
        self.refresh_expiry: str | None = None
        self.state: str | None = None
        self.state_since: str | None = None

    def probed(self, *, success: bool, duration: float, status: int) -> None:
        self.probe_success = _ONE if success else _ZERO
        self.probe_duration = value_text(duration)
        self.probe_status = _status_text(status)

    def token_expiry(self, access: float | None, refresh: float | None) -> None:
        self.access_expiry = None if access is None else value_text(access)
        self.refresh_expiry = None if refresh is None else value_text(refresh)

    def entered(self, state: str, since: float) -> None:
        self.state = state
        self.state_since = value_text(since)


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

ROWS_PER_CHUNK: Final = 4096

# Set by `written_directly`: where `collect` leaves the series it skips.
_skipped: ContextVar[list[ConnectionSeries] | None] = ContextVar("_skipped", default=None)


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
        skipped = _skipped.get()
        if skipped is not None:
            skipped.append(self)
            return
        rows = list(self.rows.items())
        for name, help_text, attr in _GAUGES:
            family = GaugeMetricFamily(name, help_text, labels=["connection"])
            for cid, row in rows:
                text = getattr(row, attr)
                if text is not None:
                    family.add_metric((cid,), float(text))
            yield family
        state = GaugeMetricFamily(STATE_METRIC, _STATE_HELP, labels=["connection", "state"])
        for cid, row in rows:
            current = row.state
            if current is not None:
                state.add_metric((cid, current), 1.0)
        yield state

    def exposition(self, *, openmetrics: bool) -> Iterator[bytes]:
        """The families of `collect` as prometheus_client writes them in the text format
        0.0.4 or in OpenMetrics 1.0 (there without `# EOF`), when it leaves metric and
        label names as they are (escaping `underscores` or `allow-utf-8`).

        Encoded in chunks of at most `ROWS_PER_CHUNK` samples: a scrape of 100,000
        connections never holds its 700,000 lines as separate strings, nor the whole text
        both as `str` and as `bytes`."""
        snapshot = self.rows.copy()
        labelled = [(f'connection="{_escape(cid)}"', row) for cid, row in snapshot.items()]
        slices = [
            labelled[start : start + ROWS_PER_CHUNK]
            for start in range(0, len(labelled), ROWS_PER_CHUNK)
        ]
        for name, help_text, attr in _GAUGES:
            yield _header(name, help_text, openmetrics=openmetrics).encode()
            for part in slices:
                text = "".join(
                    f"{name}{{{label}}} {value}\n"
                    for label, row in part
                    if (value := getattr(row, attr)) is not None
                )
                if text:
                    yield text.encode()
        yield _header(STATE_METRIC, _STATE_HELP, openmetrics=openmetrics).encode()
        for part in slices:
            text = "".join(
                f'{STATE_METRIC}{{{label},state="{_escape(state)}"}} {_ONE}\n'
                for label, row in part
                if (state := row.state) is not None
            )
            if text:
                yield text.encode()


@contextmanager
def written_directly() -> Iterator[list[ConnectionSeries]]:
    """Within the block, collecting a registry skips every `ConnectionSeries` in it and
    lists it here instead, for the caller to write with `exposition`."""
    skipped: list[ConnectionSeries] = []
    token = _skipped.set(skipped)
    try:
        yield skipped
    finally:
        _skipped.reset(token)


def _header(name: str, help_text: str, *, openmetrics: bool) -> str:
    help_text = help_text.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:
        help_text = help_text.replace('"', r"\"")
    return f"# HELP {name} {help_text}\n# TYPE {name} gauge\n"


def _escape(label_value: str) -> str:
    """A label value as both formats write it."""
    return label_value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
