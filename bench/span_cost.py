"""What a probe's telemetry costs, part by part, measured alone (no I/O, one CPU).

A probe makes two spans (the INTERNAL `probe` span and the CLIENT span of its request),
one JSON log line and, in the export thread, the OTLP encoding of both spans. This times
each part in a loop, in this process, pinned to the benchmark's CPU:

- `sdk spans`: the two spans through the OpenTelemetry SDK as the daemon configures it
  (ParentBased(ALWAYS_ON)), ended into a span processor that drops them, so the export
  is left out: `start_as_current_span`, `start_span` with the request's attributes,
  `set_attribute`, `end()`;
- `sdk spans + export queue`: the same, ended into the daemon's span processor
  (`BoundedSpanProcessor` around the SDK's batch processor, as `monitor.telemetry`
  sets it up) with an exporter that sends nothing: the queue, its lock and the export
  thread's hand-off;
- `minimal spans`: the same API calls on plain slotted span objects (ids from
  `random.getrandbits`, the context attached and detached the same way): what any
  tracer implementing the OpenTelemetry API would at least cost;
- `encode (ours)` and `encode (official)`: both spans to OTLP protobuf bytes,
  `monitor.telemetry.otlp_encode` against the exporter's `encode_spans`, in batches
  of 512;
- `log line`: one `http.request` line through the daemon's JSON formatter into memory.

The collector runs with the thresholds `snowmon run` sets (`monitor.daemon.GC_THRESHOLDS`)
unless `--default-gc`: spans waiting in the export queue are live objects that every
young collection walks again, which the defaults do every 700 allocations.

    .venv/bin/python -m bench.span_cost                  # 30,000 probes a part (~15 s)
    .venv/bin/python -m bench.span_cost --probes 5000    # quicker
    .venv/bin/python -m bench.span_cost --default-gc     # Python's GC thresholds
"""

from __future__ import annotations

import argparse
import gc
import io
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from bench import harness as h
from monitor.daemon import GC_THRESHOLDS
from monitor.telemetry.logs import configure_logging
from monitor.telemetry.otlp_encode import encode_spans_bytes
from monitor.telemetry.tracing import BoundedSpanProcessor

URL = "http://127.0.0.5:40001/api/now/table/sys_user?sysparm_limit=1&sysparm_fields=sys_id"
CLIENT_ATTRIBUTES: Mapping[str, str | int] = {
    "http.request.method": "GET",
    "url.full": URL,
    "server.address": "127.0.0.5",
    "server.port": 40001,
    "snowmon.connection": "dev00042",
}
PROBE_ATTRIBUTES: Mapping[str, str] = {
    "snowmon.connection": "dev00042",
    "server.address": "127.0.0.5",
}


class _Drop(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        pass


class _Nowhere(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _MinimalSpan(trace.Span):
    """Just enough of `trace.Span` for the probe's calls."""

    __slots__ = ("_context", "attributes", "end_time", "kind", "name", "parent", "start")

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: Mapping[str, Any],
        kind: SpanKind,
    ) -> None:
        self.name, self._context, self.parent, self.kind = name, context, parent, kind
        self.attributes = dict(attributes)
        self.start = time.time_ns()
        self.end_time: int | None = None

    def get_span_context(self) -> SpanContext:
        return self._context

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self.attributes.update(attributes)

    def add_event(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update_name(self, name: str) -> None:
        self.name = name

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        pass

    def record_exception(self, *args: Any, **kwargs: Any) -> None:
        pass

    def end(self, end_time: int | None = None) -> None:
        self.end_time = time.time_ns()


def _minimal_span(name: str, attributes: Mapping[str, Any], kind: SpanKind) -> _MinimalSpan:
    parent = trace.get_current_span().get_span_context()
    trace_id = parent.trace_id if parent.is_valid else random.getrandbits(128)
    context = SpanContext(trace_id, random.getrandbits(64), False, TraceFlags(1))
    return _MinimalSpan(name, context, parent if parent.is_valid else None, attributes, kind)


@contextmanager
def _current(span: trace.Span) -> Iterator[trace.Span]:
    token = context_api.attach(trace.set_span_in_context(span))
    try:
        yield span
    finally:
        context_api.detach(token)
        span.end()


def sdk_probe(tracer: trace.Tracer) -> Callable[[], None]:
    def run() -> None:
        with tracer.start_as_current_span("probe", attributes=PROBE_ATTRIBUTES) as outer:
            span = tracer.start_span("GET", kind=SpanKind.CLIENT, attributes=CLIENT_ATTRIBUTES)
            span.set_attribute("http.response.status_code", 200)
            span.end()
            outer.set_attribute("snowmon.outcome", "ok")

    return run


def minimal_probe() -> None:
    with _current(_minimal_span("probe", PROBE_ATTRIBUTES, SpanKind.INTERNAL)) as outer:
        span = _minimal_span("GET", CLIENT_ATTRIBUTES, SpanKind.CLIENT)
        span.set_attribute("http.response.status_code", 200)
        span.end()
        outer.set_attribute("snowmon.outcome", "ok")


def finished_spans(probes: int) -> Sequence[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampling.ParentBased(sampling.ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run = sdk_probe(provider.get_tracer("snowmon"))
    for _ in range(probes):
        run()
    return exporter.get_finished_spans()


def per_probe(run: Callable[[], None], probes: int) -> float:
    """CPU µs per call, the best of three runs after a warm-up."""
    for _ in range(min(probes, 2000)):
        run()
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(probes):
            run()
        best = min(best, time.process_time() - start)
    return round(best / probes * 1e6, 2)


def encoding(
    spans: Sequence[ReadableSpan], encode: Callable[[Sequence[ReadableSpan]], Any]
) -> float:
    batches = [spans[i : i + 512] for i in range(0, len(spans), 512)]
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for batch in batches:
            encode(batch)
        best = min(best, time.process_time() - start)
    return round(best / len(spans) * 2 * 1e6, 2)  # two spans a probe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=30_000)
    parser.add_argument("--default-gc", action="store_true")
    args = parser.parse_args()
    h.pin(h.SUT_CPU)
    if not args.default_gc:
        gc.set_threshold(*GC_THRESHOLDS)
    provider = TracerProvider(sampler=sampling.ParentBased(sampling.ALWAYS_ON))
    provider.add_span_processor(_Drop())
    spans = finished_spans(args.probes)
    handler = configure_logging("info", "json", io.StringIO())
    line = logging.getLogger("snowmon.http")
    fields = {
        "method": "GET",
        "url": URL,
        "target": "table",
        "status": 200,
        "duration_ms": 1.234,
        "outcome": "2xx",
        "connection": "dev00042",
    }
    queued = TracerProvider(sampler=sampling.ParentBased(sampling.ALWAYS_ON))
    queued.add_span_processor(BoundedSpanProcessor(_Nowhere(), None))
    try:
        parts = {
            "sdk spans": per_probe(sdk_probe(provider.get_tracer("snowmon")), args.probes),
            "sdk spans + export queue": per_probe(
                sdk_probe(queued.get_tracer("snowmon")), args.probes
            ),
            "minimal spans": per_probe(minimal_probe, args.probes),
            "encode (ours)": encoding(spans, encode_spans_bytes),
            "encode (official)": encoding(
                spans, lambda batch: encode_spans(batch).SerializePartialToString()
            ),
            "log line": per_probe(lambda: line.info("http.request", extra=fields), args.probes),
        }
    finally:
        logging.getLogger().removeHandler(handler)
        queued.shutdown()
    result: dict[str, Any] = {
        "bench": "span_cost",
        "command": h.command_line(),
        "machine": h.machine(),
        "probes": args.probes,
        "gc_thresholds": gc.get_threshold(),
        "cpu_us_per_probe": parts,
    }
    path = h.save("span_cost", result)
    print(h.json_dumps(result))
    print()
    print(h.table(["part (two spans, one log line a probe)", "CPU µs / probe"], parts.items()))
    print(f"\nsaved {path.relative_to(h.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
