"""Tracing: the tracer provider and the way spans leave the process.

Spans go out as OTLP over HTTP/protobuf through the SDK's BatchSpanProcessor, which
exports from its own thread. Around it, `BoundedSpanProcessor` keeps the promise that a
collector that is down, slow or answering errors never slows monitoring or grows memory:

- at most `max_queue_size` spans wait for export; beyond that a finished span is dropped
  on the spot (one lock and a compare on the event loop) and counted;
- every failed export call is counted, with the spans it carried;
- at shutdown, spans still queued after `shutdown_timeout` are dropped, not retried.

Counts land in `snowmon_telemetry_export_failures_total{signal="traces"}` and
`snowmon_telemetry_dropped_total{signal="traces",reason}`.

The standard variables apply: OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
(overridden by `otlp_endpoint` in the config), OTEL_EXPORTER_OTLP_[TRACES_]HEADERS,
OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (which
win over the configured service name), OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
(which win over `sample_ratio`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from yarl import URL

from monitor import __version__
from monitor.telemetry import otlp_encode
from monitor.telemetry.metrics import Metrics
from monitor.telemetry.settings import TelemetrySettings

SIGNAL = "traces"


class _CountingExporter(SpanExporter):
    """Hands batches to the real exporter and counts what never arrived."""

    def __init__(self, inner: SpanExporter, owner: BoundedSpanProcessor) -> None:
        self._inner = inner
        self._owner = owner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        owner = self._owner
        owner.left_queue(len(spans))
        give_up_at = owner.give_up_at
        if give_up_at is not None and time.monotonic() >= give_up_at:
            owner.count_dropped("shutdown", len(spans))
            return SpanExportResult.FAILURE
        try:
            result = self._inner.export(spans)
        except Exception:
            owner.count_failure(len(spans))
            raise
        if result is not SpanExportResult.SUCCESS:
            owner.count_failure(len(spans))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class BoundedSpanProcessor(SpanProcessor):
    """A BatchSpanProcessor that counts what it drops and gives up at shutdown."""

    def __init__(
        self,
        exporter: SpanExporter,
        metrics: Metrics | None,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay: float = 2.0,
        shutdown_timeout: float = 3.0,
    ) -> None:
        self._metrics = metrics
        self._capacity = max_queue_size
        self._shutdown_timeout = shutdown_timeout
        self._lock = threading.Lock()
        self._queued = 0
        self.give_up_at: float | None = None
        self.dropped = 0  # totals, also kept here for callers without a registry
        self.failures = 0
        self._batch = BatchSpanProcessor(
            _CountingExporter(exporter, self),
            max_queue_size=max_queue_size,
            max_export_batch_size=max_export_batch_size,
            schedule_delay_millis=schedule_delay * 1000,
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is None or not ctx.trace_flags.sampled:
            return
        with self._lock:
            full = self._queued >= self._capacity
            if not full:
                self._queued += 1
        if full:
            self.count_dropped("queue_full", 1)
            return
        self._batch.on_end(span)

    def left_queue(self, n: int) -> None:
        with self._lock:
            self._queued -= n

    def count_dropped(self, reason: str, n: int) -> None:
        with self._lock:
            self.dropped += n
        if self._metrics is not None:
            self._metrics.dropped(SIGNAL, reason, n)

    def count_failure(self, n: int) -> None:
        with self._lock:
            self.failures += 1
            self.dropped += n
        if self._metrics is not None:
            self._metrics.export_failed(SIGNAL, n)

    def shutdown(self) -> None:
        """Export what is queued for at most `shutdown_timeout` (plus one export call in
        flight, bounded by the exporter's timeout); drop the rest."""
        self.give_up_at = time.monotonic() + self._shutdown_timeout
        self._batch.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis)


def build_resource(service_name: str, attributes: Mapping[str, str] | None = None) -> Resource:
    """Resource of the configured name and attributes; OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES win over both."""
    configured: dict[str, str] = {SERVICE_NAME: service_name, SERVICE_VERSION: __version__}
    configured.update(attributes or {})
    return Resource.create(configured).merge(OTELResourceDetector().detect())


def build_sampler(settings: TelemetrySettings) -> sampling.Sampler:
    if settings.traces == "none":
        return sampling.ALWAYS_OFF
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return sampling._get_from_env_or_default()  # the SDK's own env parsing
    if settings.sample_ratio >= 1.0:
        return sampling.ParentBased(sampling.ALWAYS_ON)
    return sampling.ParentBased(sampling.TraceIdRatioBased(settings.sample_ratio))


def traces_endpoint(configured: str) -> str | None:
    """The OTLP/HTTP traces URL from the config, or None to let OTEL_* variables decide.

    A configured URL without a path (`http://collector:4318`) gets the `/v1/traces` path;
    one with a path is used as given, like OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.
    """
    if not configured:
        return None
    url = URL(configured)
    if url.path in ("", "/"):
        return str(url.with_path("/v1/traces"))
    return configured


def build_exporter(settings: TelemetrySettings) -> SpanExporter | None:
    if settings.traces == "none":
        return None
    if settings.traces == "console":
        return ConsoleSpanExporter(out=sys.stderr)  # stdout carries the JSON logs
    env_timeout = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TIMEOUT"
    )
    otlp_encode.install()  # the same bytes, a quarter of the CPU (see otlp_encode)
    return OTLPSpanExporter(
        endpoint=traces_endpoint(settings.otlp_endpoint),
        timeout=None if env_timeout else settings.export_timeout,
    )


def setup_tracing(
    settings: TelemetrySettings,
    resource_attributes: Mapping[str, str] | None = None,
    *,
    metrics: Metrics | None = None,
    exporter: SpanExporter | None = None,
) -> TracerProvider:
    """A tracer provider per the settings and OTEL_* variables. Not installed globally:
    the caller passes it (or its tracer) to whoever makes spans.

    `exporter` replaces the one the settings would build (tests pass a receiver's).
    """
    provider = TracerProvider(
        sampler=build_sampler(settings),
        resource=build_resource(settings.service_name, resource_attributes),
        shutdown_on_exit=False,
    )
    exporter = exporter if exporter is not None else build_exporter(settings)
    if exporter is not None:
        provider.add_span_processor(
            BoundedSpanProcessor(
                exporter,
                metrics,
                max_queue_size=settings.max_queue_size,
                max_export_batch_size=settings.max_export_batch_size,
                schedule_delay=settings.schedule_delay,
                shutdown_timeout=settings.shutdown_timeout,
            )
        )
    return provider
