"""Telemetry settings: the `[telemetry]` section of the configuration, plus the log level
and format of `[daemon]`, as one small value the config model can build in one line.

The standard OTEL_* environment variables still apply on top (see `tracing.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TracesMode = Literal["otlp", "console", "none"]


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    service_name: str = "snowmon"
    per_connection_metrics: bool = True
    traces: TracesMode = "otlp"
    otlp_endpoint: str = ""  # overrides OTEL_EXPORTER_OTLP_TRACES_ENDPOINT when set
    sample_ratio: float = 1.0  # used unless OTEL_TRACES_SAMPLER is set
    # Span export: a bounded queue, short timeouts; a collector that is down costs
    # dropped spans (counted), never memory or probe latency.
    max_queue_size: int = 2048
    max_export_batch_size: int = 512
    schedule_delay: float = 2.0
    export_timeout: float = 3.0  # per export call, retries included
    shutdown_timeout: float = 3.0  # after this, spans still queued at shutdown are dropped

    def __post_init__(self) -> None:
        if self.traces not in ("otlp", "console", "none"):
            raise ValueError(f"traces must be otlp, console or none, not {self.traces!r}")
        if not 0.0 <= self.sample_ratio <= 1.0:
            raise ValueError("sample_ratio must be between 0 and 1")
        if self.max_queue_size < 1 or self.max_export_batch_size < 1:
            raise ValueError("max_queue_size and max_export_batch_size must be positive")
        if self.max_export_batch_size > self.max_queue_size:
            raise ValueError("max_export_batch_size must not exceed max_queue_size")
        if self.schedule_delay <= 0 or self.export_timeout <= 0 or self.shutdown_timeout < 0:
            raise ValueError("schedule_delay and export_timeout must be positive")
