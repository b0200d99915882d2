"""Tracing: OTLP/HTTP export to a real receiver on loopback, the OTEL_* variables, and a
collector that is down, failing, slow or overwhelmed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracer
from prometheus_client import CollectorRegistry
from yarl import URL

from monitor.http import CONNECTION, HttpSettings, build_session
from monitor.telemetry import Metrics, Telemetry, TelemetrySettings
from monitor.telemetry.tracing import (
    BoundedSpanProcessor,
    build_resource,
    build_sampler,
    setup_tracing,
    traces_endpoint,
)
from tests.telemetry.helpers import closed_port, sample_value, serve

RECEIVED = web.AppKey("received", list[tuple[dict[str, str], ExportTraceServiceRequest]])
MODE = web.AppKey("mode", list[str])


async def receive(request: web.Request) -> web.Response:
    mode = request.app[MODE][0]
    if mode == "fail":
        return web.Response(status=500, text="collector broken")
    if mode == "slow":
        await asyncio.sleep(5)
    message = ExportTraceServiceRequest()
    message.ParseFromString(await request.read())
    request.app[RECEIVED].append((dict(request.headers), message))
    return web.Response(
        body=ExportTraceServiceResponse().SerializeToString(),
        content_type="application/x-protobuf",
    )


async def table(request: web.Request) -> web.Response:
    return web.json_response({"result": []})


@pytest.fixture
def collector_app() -> web.Application:
    app = web.Application()
    app[RECEIVED] = []
    app[MODE] = ["ok"]
    app.router.add_post("/v1/traces", receive)
    app.router.add_get("/api/now/table/sys_user", table)
    return app


@pytest.fixture
async def collector(collector_app: web.Application) -> AsyncIterator[URL]:
    async with serve(collector_app) as url:
        yield url


def exported(app: web.Application) -> list[tuple[dict[str, str], Any]]:
    """(resource attributes, span) for every span the receiver got."""
    out: list[tuple[dict[str, str], Any]] = []
    for _, message in app[RECEIVED]:
        for resource_spans in message.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                out.extend((resource, span) for span in scope_spans.spans)
    return out


def attributes(span: Any) -> dict[str, object]:
    result: dict[str, object] = {}
    for attr in span.attributes:
        kind = attr.value.WhichOneof("value")
        result[attr.key] = getattr(attr.value, kind)
    return result


async def test_spans_reach_a_real_otlp_receiver(
    collector: URL, collector_app: web.Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", str(collector))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k123")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    telemetry = Telemetry.create(TelemetrySettings(schedule_delay=0.05))
    url = collector / "api/now/table/sys_user" % {"sysparm_limit": "1", "code": "secret-code"}
    async with build_session(HttpSettings(), telemetry) as session:
        token = CONNECTION.set("acme-prod")
        try:
            with telemetry.tracer.start_as_current_span("probe") as probe:
                probe.set_attribute("snowmon.connection", "acme-prod")
                async with session.get(url) as resp:
                    await resp.read()
        finally:
            CONNECTION.reset(token)
    await telemetry.aclose()

    headers = [h for h, _ in collector_app[RECEIVED]]
    assert all(h.get("x-collector-key") == "k123" for h in headers)
    assert all(h.get("Content-Type") == "application/x-protobuf" for h in headers)
    spans = {span.name: (resource, span) for resource, span in exported(collector_app)}
    assert set(spans) == {"probe", "GET"}
    resource, probe_span = spans["probe"]
    _, get_span = spans["GET"]
    assert resource["service.name"] == "snowmon"
    assert resource["deployment.environment"] == "test"
    assert get_span.parent_span_id == probe_span.span_id
    assert get_span.trace_id == probe_span.trace_id
    assert probe_span.parent_span_id == b""
    assert get_span.kind == get_span.SPAN_KIND_CLIENT
    assert attributes(get_span) == {
        "http.request.method": "GET",
        "url.full": f"{collector}/api/now/table/sys_user?sysparm_limit=1&code=REDACTED",
        "server.address": "127.0.0.1",
        "server.port": collector.port,
        "http.response.status_code": 200,
        "snowmon.connection": "acme-prod",
    }
    failures = sample_value(
        telemetry.registry, "snowmon_telemetry_export_failures_total", {"signal": "traces"}
    )
    assert failures == 0


async def test_configured_endpoint_wins_over_environment(
    collector: URL, collector_app: web.Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    settings = TelemetrySettings(otlp_endpoint=str(collector), schedule_delay=0.05)
    telemetry = Telemetry.create(settings)
    with telemetry.tracer.start_as_current_span("token.refresh"):
        pass
    await telemetry.aclose()
    assert [span.name for _, span in exported(collector_app)] == ["token.refresh"]


def _spans(telemetry: Telemetry, n: int) -> None:
    for i in range(n):
        with telemetry.tracer.start_as_current_span("probe") as span:
            span.set_attribute("i", i)


async def _flush(telemetry: Telemetry) -> None:
    await asyncio.to_thread(telemetry.provider.force_flush)


def _counts(telemetry: Telemetry) -> tuple[float, float]:
    failures = sample_value(
        telemetry.registry, "snowmon_telemetry_export_failures_total", {"signal": "traces"}
    )
    dropped = sample_value(
        telemetry.registry,
        "snowmon_telemetry_dropped_total",
        {"signal": "traces", "reason": "export_failed"},
    )
    return failures, dropped


async def test_collector_down_counts_failures_quickly() -> None:
    settings = TelemetrySettings(
        otlp_endpoint=f"http://127.0.0.1:{closed_port()}", export_timeout=0.5, schedule_delay=30
    )
    telemetry = Telemetry.create(settings)
    started = time.monotonic()
    _spans(telemetry, 10)
    assert time.monotonic() - started < 0.5  # making spans never waits for the collector
    await _flush(telemetry)
    assert _counts(telemetry) == (1, 10)
    await telemetry.aclose()


async def test_collector_answering_500_counts_failures(
    collector: URL, collector_app: web.Application
) -> None:
    collector_app[MODE][0] = "fail"
    settings = TelemetrySettings(otlp_endpoint=str(collector), export_timeout=1, schedule_delay=30)
    telemetry = Telemetry.create(settings)
    _spans(telemetry, 3)
    await _flush(telemetry)
    assert _counts(telemetry) == (1, 3)
    await telemetry.aclose()


async def test_slow_collector_bounds_shutdown(
    collector: URL, collector_app: web.Application
) -> None:
    collector_app[MODE][0] = "slow"
    settings = TelemetrySettings(
        otlp_endpoint=str(collector),
        export_timeout=0.3,
        shutdown_timeout=0.2,
        max_queue_size=100,
        max_export_batch_size=10,
        schedule_delay=30,
    )
    telemetry = Telemetry.create(settings)
    _spans(telemetry, 150)
    queue_full = sample_value(
        telemetry.registry,
        "snowmon_telemetry_dropped_total",
        {"signal": "traces", "reason": "queue_full"},
    )
    assert 40 <= queue_full <= 50  # a batch or so may already have left the queue
    started = time.monotonic()
    await telemetry.aclose()
    assert time.monotonic() - started < 2.0
    dropped = sum(
        sample_value(
            telemetry.registry,
            "snowmon_telemetry_dropped_total",
            {"signal": "traces", "reason": reason},
        )
        for reason in ("queue_full", "export_failed", "shutdown")
    )
    assert dropped == 150
    assert collector_app[RECEIVED] == []


class BlockingExporter(SpanExporter):
    """Blocks its first export until released: a collector that hangs."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(10)
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_full_queue_drops_exactly_what_does_not_fit() -> None:
    metrics = Metrics(CollectorRegistry())
    exporter = BlockingExporter()
    processor = BoundedSpanProcessor(
        exporter, metrics, max_queue_size=4, max_export_batch_size=4, schedule_delay=30
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for _ in range(4):
        tracer.start_span("first").end()
    assert exporter.entered.wait(5)  # the worker holds 4 spans in a hanging export
    for _ in range(10):
        tracer.start_span("second").end()
    labels = {"signal": "traces", "reason": "queue_full"}
    assert sample_value(metrics.registry, "snowmon_telemetry_dropped_total", labels) == 6
    exporter.release.set()
    provider.shutdown()
    assert len(exporter.spans) == 8


def test_console_traces_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    provider = setup_tracing(TelemetrySettings(traces="console", schedule_delay=0.05))
    with provider.get_tracer("t").start_as_current_span("notify.slack"):
        pass
    provider.shutdown()
    captured = capsys.readouterr()
    assert '"name": "notify.slack"' in captured.err
    assert captured.out == ""


def test_traces_none_samples_nothing() -> None:
    provider = setup_tracing(TelemetrySettings(traces="none"))
    with provider.get_tracer("t").start_as_current_span("probe") as span:
        assert not span.is_recording()
    provider.shutdown()


def test_traces_none_gives_the_api_no_op_tracer() -> None:
    off = Telemetry.create(TelemetrySettings(traces="none"))
    assert isinstance(off.tracer, NoOpTracer)
    assert not off.tracing
    with off.tracer.start_as_current_span("probe") as span:
        assert not span.is_recording()
        assert not span.get_span_context().is_valid  # no ids drawn, nothing to export
    off.shutdown()
    on = Telemetry.create(TelemetrySettings(traces="console"))
    assert on.tracing
    with on.tracer.start_as_current_span("probe") as span:
        assert span.is_recording()
    on.shutdown()


def test_sampler_from_settings_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    ratio = build_sampler(TelemetrySettings(sample_ratio=0.25)).get_description()
    assert ratio.startswith("ParentBased{root:TraceIdRatioBased{0.25},")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    assert build_sampler(TelemetrySettings(sample_ratio=0.25)).get_description() == (
        "TraceIdRatioBased{0.5}"
    )


def test_resource_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    plain = build_resource("snowmon", {"deployment.environment": "cfg"}).attributes
    assert plain["service.name"] == "snowmon"
    assert plain["deployment.environment"] == "cfg"
    assert plain["service.version"] == "0.1.0"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "snowmon-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,team=sre")
    env = build_resource("snowmon", {"deployment.environment": "cfg"}).attributes
    assert env["service.name"] == "snowmon-eu"
    assert env["deployment.environment"] == "prod"
    assert env["team"] == "sre"


def test_traces_endpoint() -> None:
    assert traces_endpoint("") is None
    assert traces_endpoint("http://otel:4318") == "http://otel:4318/v1/traces"
    assert traces_endpoint("http://otel:4318/") == "http://otel:4318/v1/traces"
    assert traces_endpoint("http://otel:4318/custom/traces") == "http://otel:4318/custom/traces"


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="traces"):
        TelemetrySettings(traces="jaeger")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_ratio"):
        TelemetrySettings(sample_ratio=2)
    with pytest.raises(ValueError, match="max_export_batch_size"):
        TelemetrySettings(max_queue_size=10, max_export_batch_size=20)
