"""The telemetry bundle: one tracer provider, one metrics registry, built once by the
daemon and passed to whoever traces or counts. Nothing is installed globally, so every
test builds its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import NoOpTracer, Tracer
from prometheus_client import CollectorRegistry

from monitor import __version__
from monitor.telemetry.metrics import Metrics
from monitor.telemetry.settings import TelemetrySettings
from monitor.telemetry.tracing import setup_tracing

INSTRUMENTATION_NAME = "snowmon"


class Telemetry:
    """Tracer provider, tracer, metrics and their registry."""

    def __init__(self, provider: TracerProvider, metrics: Metrics, *, tracing: bool = True) -> None:
        self.provider = provider
        self.tracing = tracing
        # Tracing off: the API's no-op tracer, not the SDK's with an ALWAYS_OFF sampler,
        # which still draws ids and builds a span object per request (10 % of the samples
        # of `bench.profile_daemon --load probes --telemetry off`; `bench.compare` with a
        # `--variant` of the SDK tracer measured ~5 % more CPU per probe).
        self.tracer: Tracer = (
            provider.get_tracer(INSTRUMENTATION_NAME, __version__) if tracing else NoOpTracer()
        )
        self.metrics = metrics
        self.registry = metrics.registry

    @classmethod
    def create(
        cls,
        settings: TelemetrySettings,
        *,
        registry: CollectorRegistry | None = None,
        resource_attributes: Mapping[str, str] | None = None,
        exporter: SpanExporter | None = None,
    ) -> Telemetry:
        """Build from settings; `registry` defaults to a fresh one (not prometheus_client's
        global REGISTRY), `exporter` replaces the configured span exporter."""
        metrics = Metrics(
            registry if registry is not None else CollectorRegistry(),
            per_connection=settings.per_connection_metrics,
        )
        provider = setup_tracing(settings, resource_attributes, metrics=metrics, exporter=exporter)
        return cls(provider, metrics, tracing=settings.traces != "none")

    def shutdown(self) -> None:
        """Flush spans and stop exporting. Blocks for at most the settings'
        shutdown_timeout plus one export timeout; call it from a thread in async code
        (`aclose`)."""
        self.provider.shutdown()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.shutdown)
