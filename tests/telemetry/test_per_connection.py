"""The per-connection rows, written as exposition text by `render` without prometheus_client,
are byte for byte what prometheus_client writes for the same gauges, in every format and
escaping that /metrics negotiates."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily

from monitor.model import ProbeReason, ProbeResult, State
from monitor.telemetry import Metrics, render, render_chunks
from monitor.telemetry import per_connection as pc

NOW = 1_800_000_000.0
INF, NAN = float("inf"), float("nan")

# The contract: names, help texts and labels as prometheus_client's own gauges would have.
HELP = {
    "snowmon_probe_success": "Whether the last probe of the connection succeeded (1) or not (0).",
    "snowmon_probe_duration_seconds": "Duration of the last probe of the connection.",
    "snowmon_probe_http_status_code": (
        "HTTP status code of the last probe response, 0 when none was received."
    ),
    "snowmon_access_token_expiry_timestamp_seconds": (
        "When the connection's current access token expires (UNIX time)."
    ),
    "snowmon_refresh_token_expiry_timestamp_seconds": (
        "When the connection's current refresh token expires (UNIX time)."
    ),
    "snowmon_connection_state_since_timestamp_seconds": (
        "When the connection entered its current health state (UNIX time)."
    ),
}
STATE_HELP = "The connection's current health state: 1 for the current state only."

# (connection id, probe (success, duration, status) or None, token expiries or None,
#  (state, since) or None): ids that need escaping, values that prometheus_client spells
#  its own way (+Inf, NaN, exponents from 7 integer digits), series absent.
CONNECTIONS: list[
    tuple[
        str,
        tuple[bool, float, int] | None,
        tuple[float, float | None] | None,
        tuple[str, float] | None,
    ]
] = [
    ("acme-prod", (True, 0.0123, 200), (NOW + 1799, NOW + 8_640_000), ("healthy", NOW)),
    ('quo"te', (False, INF, 0), (NOW + 1799.25, None), ("failing", NOW + 0.5)),
    ("back\\slash", (False, NAN, 401), None, ("credentials_expired", 1e9)),
    ("new\nline", (True, 1e-07, 200), (1e22, 1_234_567.0), ("pending", 123_456.0)),
    ("ünïcødé ☃", (True, 12_345_678.0, 503), (-12_345_678.0, -INF), None),
    ("", None, (0.0, -0.0), ('odd"\\\nstate', NOW)),
    ('all\\"\n', (True, 5.0, 200), None, ("healthy", NOW + 1e-06)),
    ("not-probed-yet", None, None, None),
]

PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
DIRECT = [
    "",
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=underscores",
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text;version=2.0.0",
    PROMETHEUS_3,
]
# Escaping schemes that rename metrics: prometheus_client writes the rows too.
RENAMING = [
    "text/plain;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
]


def registries(state_help: str = STATE_HELP) -> tuple[CollectorRegistry, CollectorRegistry]:
    """The same metrics twice: `ConnectionSeries` in ours, plain prometheus_client gauges
    in theirs, both after the same other collectors (a counter, a histogram with an
    exemplar: shared objects, so equal `_created` times)."""
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    probes = Counter("snowmon_probes", "Probes run, by result.", ["result"], registry=None)
    probes.labels("success").inc()
    latency = Histogram("snowmon_probe_latency_seconds", "Probe duration.", registry=None)
    latency.observe(0.2, {"trace_id": "ab" * 16})
    for collector in (probes, latency):
        ours.register(collector)
        theirs.register(collector)

    series = pc.ConnectionSeries()
    ours.register(series)
    gauges = {
        name: Gauge(name, text, ["connection"], registry=theirs) for name, text in HELP.items()
    }
    state_gauge = Gauge(
        "snowmon_connection_state", state_help, ["connection", "state"], registry=theirs
    )

    def their(name: str, cid: str, value: float) -> None:
        gauges[name].labels(cid).set(value)

    for cid, probe, expiry, state in CONNECTIONS:
        row = series.row(cid)
        if probe is not None:
            success, duration, status = probe
            row.probed(success=success, duration=duration, status=status)
            their("snowmon_probe_success", cid, 1.0 if success else 0.0)
            their("snowmon_probe_duration_seconds", cid, duration)
            their("snowmon_probe_http_status_code", cid, float(status))
        if expiry is not None:
            access, refresh = expiry
            row.token_expiry(access, refresh)
            their("snowmon_access_token_expiry_timestamp_seconds", cid, access)
            if refresh is not None:
                their("snowmon_refresh_token_expiry_timestamp_seconds", cid, refresh)
        if state is not None:
            current, since = state
            row.entered(current, since)
            their("snowmon_connection_state_since_timestamp_seconds", cid, since)
            state_gauge.labels(cid, current).set(1.0)
    return ours, theirs


@pytest.mark.parametrize("accept", DIRECT + RENAMING)
def test_rows_are_what_prometheus_client_writes(accept: str) -> None:
    ours, theirs = registries()
    encoder, content_type = choose_encoder(accept)
    expected = encoder(theirs)
    assert render(ours, accept) == (expected, content_type)
    assert encoder(ours) == expected  # `collect`, for other readers of the registry


@pytest.mark.parametrize("accept", DIRECT)
def test_render_writes_the_rows_itself(accept: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = registries()
    expected = choose_encoder(accept)[0](theirs)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("per-connection rows formatted by prometheus_client")

    monkeypatch.setattr(GaugeMetricFamily, "add_metric", refuse)
    body, _ = render(ours, accept)
    assert body == expected
    assert body.count(b"# EOF") == (1 if b"# EOF" in expected else 0)


@pytest.mark.parametrize("accept", DIRECT)
@pytest.mark.parametrize("rows_per_chunk", [1, 3, 4096])
def test_rows_in_chunks_are_the_same_bytes(
    accept: str, rows_per_chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pc, "ROWS_PER_CHUNK", rows_per_chunk)
    ours, theirs = registries()
    chunks, _ = render_chunks(ours, accept)
    assert b"".join(chunks) == choose_encoder(accept)[0](theirs)
    assert all(chunks)  # no empty writes
    # after prometheus_client's part: a family's header, or one slice of rows (or # EOF)
    for chunk in chunks[1:]:
        lines = chunk.count(b"\n")
        if chunk.startswith(b"# HELP "):
            assert lines == 2
        else:
            assert 1 <= lines <= rows_per_chunk


@pytest.mark.parametrize("accept", DIRECT)
def test_help_is_escaped_per_format(accept: str, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = 'A "quoted" back\\slash and a\nnewline.'
    monkeypatch.setattr(pc, "_STATE_HELP", odd)
    ours, theirs = registries(odd)
    assert render(ours, accept)[0] == choose_encoder(accept)[0](theirs)


@pytest.mark.parametrize("accept", ["", PROMETHEUS_3])
def test_metrics_render_is_prometheus_clients_own(accept: str) -> None:
    """The whole /metrics of `Metrics`: the per-connection families are last there too.
    Process and GC figures change between two renders; everything else must not."""
    metrics = Metrics(CollectorRegistry(), per_connection=True)
    metrics.http_request("GET", "table", "2xx", 0.05, {"trace_id": "cd" * 16})
    for cid, reason in (("acme", ProbeReason.OK), ('we"ird\n', ProbeReason.TIMEOUT)):
        metrics.state_changed(cid, None, State.HEALTHY, NOW)
        metrics.probe_done(
            cid, ProbeResult(reason, NOW, 0.25, 200 if reason is ProbeReason.OK else None)
        )
    body, _ = render(metrics.registry, accept)
    expected = choose_encoder(accept)[0](metrics.registry)

    def stable(exposition: bytes) -> bytes:
        return re.sub(rb"(?m)^(# (HELP|TYPE) )?(process|python_gc)_.*\n", b"", exposition)

    assert stable(body) == stable(expected)
    assert body.removesuffix(b"# EOF\n").endswith(
        b'snowmon_connection_state{connection="we\\"ird\\n",state="healthy"} 1.0\n'
    )
