"""Telemetry: traces (OpenTelemetry, OTLP), Prometheus metrics and JSON logs.

Imports no business module. Build one `Telemetry` in the composition root and pass it on.
"""

from monitor.telemetry.context import CONNECTION
from monitor.telemetry.logs import configure_logging
from monitor.telemetry.metrics import Metrics, render, render_chunks
from monitor.telemetry.settings import TelemetrySettings
from monitor.telemetry.setup import Telemetry

__all__ = [
    "CONNECTION",
    "Metrics",
    "Telemetry",
    "TelemetrySettings",
    "configure_logging",
    "render",
    "render_chunks",
]
