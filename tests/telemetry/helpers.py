"""Test helpers: telemetry wired to in-memory exporters, log capture, loopback servers."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from yarl import URL

from monitor.telemetry import Metrics, Telemetry
from monitor.telemetry.logs import JsonFormatter


def make_telemetry(*, per_connection: bool = True) -> tuple[Telemetry, InMemorySpanExporter]:
    """Telemetry whose spans land synchronously in an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = Metrics(CollectorRegistry(), per_connection=per_connection)
    return Telemetry(provider, metrics), exporter


class JsonLines(logging.Handler):
    """Formats records with the production JSON formatter and keeps the parsed lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.raw: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.raw.append(self.format(record))

    @property
    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.raw]

    def events(self, event: str) -> list[dict[str, object]]:
        return [line for line in self.lines if line["event"] == event]


@contextmanager
def capture_logs(name: str = "snowmon") -> Iterator[JsonLines]:
    logger = logging.getLogger(name)
    handler = JsonLines()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[URL]:
    """Run `app` on 127.0.0.1 on an ephemeral port; yields its base URL."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield URL.build(scheme="http", host=host, port=port)
    finally:
        await runner.cleanup()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def sample_value(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float:
    value = registry.get_sample_value(name, labels)
    if value is None:
        raise AssertionError(f"no sample {name}{labels}")
    return value
