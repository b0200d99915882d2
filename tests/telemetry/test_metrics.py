"""Metrics: names, initial series, the keeper-facing methods, and the exposition in both
formats (parsed back, exemplars present in OpenMetrics, `promtool check metrics` clean)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from monitor.model import (
    Grant,
    ProbeReason,
    ProbeResult,
    State,
    TokenFailure,
    TokenResult,
    TokenSet,
)
from monitor.secret import Secret
from monitor.telemetry import Metrics, render
from tests.telemetry.helpers import sample_value

NOW = 1_800_000_000.0


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return sample_value(metrics.registry, name, labels)


def absent(metrics: Metrics, name: str, **labels: str) -> bool:
    return metrics.registry.get_sample_value(name, labels) is None


def ok_probe(duration: float = 0.12) -> ProbeResult:
    return ProbeResult(ProbeReason.OK, started_at=NOW, duration=duration, status=200)


def tokens(*, refresh: bool = True) -> TokenSet:
    return TokenSet(
        access_token=Secret("a"),
        access_expires_at=NOW + 1799,
        obtained_at=NOW,
        refresh_token=Secret("r") if refresh else None,
        refresh_issued_at=NOW if refresh else None,
        refresh_expires_at=NOW + 8_640_000 if refresh else None,
    )


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), per_connection=True)


def test_known_label_combinations_start_at_zero(metrics: Metrics) -> None:
    assert value(metrics, "snowmon_probes_total", result="success") == 0
    assert value(metrics, "snowmon_probes_total", result="failure") == 0
    for reason in ProbeReason:
        if reason is ProbeReason.OK:
            assert absent(metrics, "snowmon_probe_failures_total", reason="ok")
        else:
            assert value(metrics, "snowmon_probe_failures_total", reason=reason.value) == 0
    for grant in Grant:
        for result in ["ok", *TokenFailure]:
            assert value(metrics, "snowmon_token_requests_total", grant=grant, result=result) == 0
    for state in State:
        assert value(metrics, "snowmon_connections", state=state.value) == 0
    for result in ("sent", "failed", "dropped", "suppressed"):
        assert value(metrics, "snowmon_notifications_total", result=result) == 0
    for kind in ("probe", "refresh"):
        assert value(metrics, "snowmon_scheduler_lag_seconds_count", kind=kind) == 0
    assert value(metrics, "snowmon_telemetry_export_failures_total", signal="traces") == 0
    assert (
        value(
            metrics,
            "snowmon_http_client_request_duration_seconds_count",
            method="POST",
            target="token",
            status_class="5xx",
        )
        == 0
    )
    info = value(
        metrics,
        "snowmon_build_info",
        version="0.1.0",
        python=__import__("platform").python_version(),
    )
    assert info == 1
    assert value(metrics, "process_open_fds") > 0
    assert value(metrics, "snowmon_event_loop_lag_seconds") == 0


def test_probe_done(metrics: Metrics) -> None:
    metrics.probe_done("acme", ok_probe(0.2))
    failed = ProbeResult(ProbeReason.AUTH_REJECTED, started_at=NOW, duration=0.03, status=401)
    metrics.probe_done("beta", failed)
    timeout = ProbeResult(ProbeReason.TIMEOUT, started_at=NOW, duration=10.0)
    metrics.probe_done("gamma", timeout)

    assert value(metrics, "snowmon_probes_total", result="success") == 1
    assert value(metrics, "snowmon_probes_total", result="failure") == 2
    assert value(metrics, "snowmon_probe_failures_total", reason="auth_rejected") == 1
    assert value(metrics, "snowmon_probe_failures_total", reason="timeout") == 1
    assert value(metrics, "snowmon_probe_latency_seconds_bucket", result="success", le="0.25") == 1
    assert value(metrics, "snowmon_probe_latency_seconds_bucket", result="success", le="0.1") == 0
    assert value(metrics, "snowmon_probe_latency_seconds_count", result="failure") == 2
    assert value(metrics, "snowmon_probe_success", connection="acme") == 1
    assert value(metrics, "snowmon_probe_success", connection="beta") == 0
    assert value(metrics, "snowmon_probe_duration_seconds", connection="acme") == 0.2
    assert value(metrics, "snowmon_probe_http_status_code", connection="beta") == 401
    assert value(metrics, "snowmon_probe_http_status_code", connection="gamma") == 0


def test_token_results_and_expiry(metrics: Metrics) -> None:
    metrics.token_result("c", TokenResult(Grant.REFRESH_TOKEN, tokens(), None, 200, ""))
    rejected = TokenResult(Grant.REFRESH_TOKEN, None, TokenFailure.REJECTED, 401, "access_denied")
    metrics.token_result("c", rejected)
    metrics.token_result("c", rejected)
    assert value(metrics, "snowmon_token_requests_total", grant="refresh_token", result="ok") == 1
    assert (
        value(metrics, "snowmon_token_requests_total", grant="refresh_token", result="rejected")
        == 2
    )

    metrics.token_expiry("c", tokens())
    assert value(metrics, "snowmon_access_token_expiry_timestamp_seconds", connection="c") == (
        NOW + 1799
    )
    assert value(metrics, "snowmon_refresh_token_expiry_timestamp_seconds", connection="c") == (
        NOW + 8_640_000
    )
    metrics.token_expiry("c", tokens(refresh=False))  # client_credentials: no refresh token
    assert absent(metrics, "snowmon_refresh_token_expiry_timestamp_seconds", connection="c")
    metrics.token_expiry("c", None)
    assert absent(metrics, "snowmon_access_token_expiry_timestamp_seconds", connection="c")


def test_state_changes_keep_counts_and_one_series(metrics: Metrics) -> None:
    metrics.state_changed("a", None, State.PENDING, NOW)
    metrics.state_changed("b", None, State.PENDING, NOW)
    metrics.state_changed("a", State.PENDING, State.HEALTHY, NOW + 5)
    metrics.state_changed("a", State.HEALTHY, State.HEALTHY, NOW + 9)  # repeated: no double count
    assert value(metrics, "snowmon_connections", state="pending") == 1
    assert value(metrics, "snowmon_connections", state="healthy") == 1
    assert value(metrics, "snowmon_connection_state", connection="a", state="healthy") == 1
    assert absent(metrics, "snowmon_connection_state", connection="a", state="pending")
    assert value(metrics, "snowmon_connection_state_since_timestamp_seconds", connection="a") == (
        NOW + 9
    )
    # `old` that disagrees with what was seen does not corrupt the counts
    metrics.state_changed("b", State.FAILING, State.CREDENTIALS_EXPIRED, NOW)
    assert value(metrics, "snowmon_connections", state="pending") == 0
    assert value(metrics, "snowmon_connections", state="failing") == 0
    assert value(metrics, "snowmon_connections", state="credentials_expired") == 1

    metrics.probe_done("a", ok_probe())
    metrics.forget("a")
    assert value(metrics, "snowmon_connections", state="healthy") == 0
    assert absent(metrics, "snowmon_connection_state", connection="a", state="healthy")
    assert absent(metrics, "snowmon_probe_success", connection="a")
    metrics.forget("a")  # twice is harmless
    assert value(metrics, "snowmon_connections", state="healthy") == 0


def test_per_connection_off_has_no_connection_label() -> None:
    metrics = Metrics(CollectorRegistry(), per_connection=False)
    metrics.state_changed("a", None, State.HEALTHY, NOW)
    metrics.probe_done("a", ok_probe())
    metrics.token_expiry("a", tokens())
    text, _ = render(metrics.registry, "")
    assert "connection=" not in text.decode()
    assert value(metrics, "snowmon_connections", state="healthy") == 1
    metrics.forget("a")
    assert value(metrics, "snowmon_connections", state="healthy") == 0


def test_bounded_label_values_are_enforced(metrics: Metrics) -> None:
    metrics.scheduler_lag("probe", 0.003)
    metrics.notification("sent")
    metrics.configured(7)
    assert value(metrics, "snowmon_scheduler_lag_seconds_bucket", kind="probe", le="0.005") == 1
    assert value(metrics, "snowmon_notifications_total", result="sent") == 1
    assert value(metrics, "snowmon_connections_configured") == 7
    with pytest.raises(ValueError, match="cleanup"):
        metrics.scheduler_lag("cleanup", 1.0)
    with pytest.raises(ValueError, match="maybe"):
        metrics.notification("maybe")


def _populated() -> tuple[Metrics, str]:
    metrics = Metrics(CollectorRegistry(), per_connection=True)
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("t")
    with tracer.start_as_current_span("probe") as span:
        metrics.probe_done("acme-prod", ok_probe())
    metrics.state_changed("acme-prod", None, State.HEALTHY, NOW)
    metrics.token_expiry("acme-prod", tokens())
    metrics.http_request("GET", "table", "2xx", 0.05, {"trace_id": "ab" * 16})
    return metrics, format(span.get_span_context().trace_id, "032x")


def test_classic_exposition_parses() -> None:
    metrics, _ = _populated()
    body, content_type = render(metrics.registry, "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in parse_text(body.decode())}
    assert families["snowmon_probes"].type == "counter"
    assert families["snowmon_probe_latency_seconds"].type == "histogram"
    assert families["snowmon_connection_state"].type == "gauge"
    assert "# {" not in body.decode()  # no exemplars in the classic format


def test_openmetrics_exposition_parses_with_exemplars() -> None:
    metrics, trace_id = _populated()
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    body, content_type = render(metrics.registry, accept)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    families = {f.name: f for f in parse_openmetrics(body.decode())}  # type: ignore[no-untyped-call]
    latency = families["snowmon_probe_latency_seconds"]
    exemplars = [s.exemplar for s in latency.samples if s.exemplar is not None]
    assert [e.labels["trace_id"] for e in exemplars] == [trace_id]
    assert families["snowmon_build"].type == "info"
    assert families["snowmon_probe_success"].samples[0].labels == {"connection": "acme-prod"}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    for candidate in ("/usr/bin/promtool", "/opt/prometheus/usr/bin/promtool"):
        if Path(candidate).is_file():
            return candidate
    raise AssertionError("promtool not found: install Debian's prometheus package")


@pytest.mark.tools
def test_promtool_finds_nothing_to_say() -> None:
    metrics, _ = _populated()
    body, _ = render(metrics.registry, "")
    done = subprocess.run(
        [_promtool(), "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == b""
    assert done.stderr.strip() == b""
