"""The hand-written OTLP span encoder against the official one: every case builds real
SDK spans and asserts the bytes decode to a message equal to `encode_spans(spans)` and are
byte-identical to its serialization (upb writes fields in field-number order and these
messages have no maps, so the official serialization is deterministic)."""

from __future__ import annotations

import asyncio
import enum
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from aiohttp import web
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_trace_exporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from monitor.telemetry import otlp_encode
from monitor.telemetry.otlp_encode import encode_spans_bytes, install
from tests.telemetry.helpers import serve

RESOURCE = Resource(
    {"service.name": "snowmon", "service.version": "0.1.0", "host.name": "mon-1"},
    schema_url="https://opentelemetry.io/schemas/1.26.0",
)

REMOTE_PARENT = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "v1"), ("other", "x")]),
)


class Color(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Blob(bytes):
    pass


class Spans:
    """Tracers of one or more providers; `collect()` returns their spans in the order
    they ended (all providers share one exporter)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.extra: list[ReadableSpan] = []  # hand-made, appended after the exported ones

    def tracer(
        self,
        resource: Resource = RESOURCE,
        *,
        name: str = "snowmon",
        version: str | None = "0.1.0",
        schema_url: str | None = None,
        attributes: dict[str, Any] | None = None,
        limits: SpanLimits | None = None,
    ) -> trace_api.Tracer:
        provider = TracerProvider(resource=resource, span_limits=limits, shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        return provider.get_tracer(name, version, schema_url=schema_url, attributes=attributes)

    def collect(self) -> list[ReadableSpan]:
        return [*self.exporter.get_finished_spans(), *self.extra]


def minimal(spans: Spans) -> None:
    spans.tracer().start_span("probe").end()


def beside_a_real_span(**fields: Any) -> tuple[ReadableSpan, ReadableSpan]:
    """A real SDK span, and a hand-made one with its context and `fields`."""
    spans = Spans()
    minimal(spans)
    (span,) = spans.collect()
    fields.setdefault("instrumentation_scope", span.instrumentation_scope)
    return span, ReadableSpan(context=span.context, resource=RESOURCE, **fields)


def kinds(spans: Spans) -> None:
    tracer = spans.tracer()
    for kind in SpanKind:
        tracer.start_span(f"span {kind.name}", kind=kind).end()


def scalar_values(spans: Spans) -> None:
    span = spans.tracer().start_span("scalars", kind=SpanKind.CLIENT)
    values: dict[str, Any] = {
        "str": "GET",
        "str.empty": "",
        "bool.true": True,
        "bool.false": False,
        "int.zero": 0,
        "int.one": 1,
        "int.127": 127,
        "int.128": 128,
        "int.negative": -1,
        "int.negative.large": -(2**40),
        "int.max": 2**63 - 1,
        "int.min": -(2**63),
        "int.large": 2**53 + 1,
        "float": 1.5,
        "float.one": 1.0,
        "float.zero": 0.0,
        "float.negative_zero": -0.0,
        "float.negative": -2.25e-300,
        "float.inf": math.inf,
        "float.-inf": -math.inf,
        "float.nan": math.nan,
        "bytes": b"\x00\xff\x80",
        "bytes.empty": b"",
        "none": None,
        "str.enum": Color.RED,
        "int.enum": Level.HIGH,
    }
    for key, value in values.items():
        span.set_attribute(key, value)
    span.end()
    # the SDK drops empty keys; a hand-made span still has them
    spans.extra.append(
        ReadableSpan(
            name="hand-made",
            context=span.get_span_context(),
            resource=RESOURCE,
            attributes={"": "empty key", **values},
            instrumentation_scope=InstrumentationScope("snowmon", "0.1.0"),
        )
    )


def sequence_values(spans: Spans) -> None:
    spans.tracer().start_span(
        "sequences",
        attributes={
            "strs": ["a", "", "ü"],
            "bools": (True, False),
            "ints": [0, -1, 2**63 - 1, -(2**63)],
            "floats": [0.0, -0.0, 1.5, math.nan],
            "bytes": [b"", b"\x01"],
            "empty": [],
            "with.none": ["a", None, "b"],
            "mixed": ["a", 1, 2.5, True, None, b"x"],
            "nested": [[1, 2], ["x"], []],
            "bytearray": bytearray(b"\x01\x02"),  # the SDK makes it a tuple of ints
        },
    ).end()


def mapping_values(spans: Spans) -> None:
    spans.tracer().start_span(
        "mappings",
        attributes={
            "map": {"a": 1, "b": "two", "c": [True, None], "d": {"e": 2.5}, "": "x"},
            "map.empty": {},
        },
    ).end()


def non_ascii(spans: Spans) -> None:
    tracer = spans.tracer(
        Resource({"service.name": "snömon", "owner": "équipe ✓"}), name="naïve", version="β"
    )
    span = tracer.start_span("проба ✓ 🚀", attributes={"ключ": "значение", "emoji": "🚀🐍"})
    span.add_event("événement", {"naïve": "é"})
    span.set_status(Status(StatusCode.ERROR, "échec 💥"))
    span.end()


def long_values(spans: Spans) -> None:
    # lengths with 1-, 2- and 3-byte varints; the span itself exceeds 16 KiB
    tracer = spans.tracer()
    tracer.start_span(
        "x" * 200,
        attributes={"short": "a" * 127, "two": "b" * 128, "three": "c" * 20_000},
    ).end()
    tracer.start_span("many", attributes={f"k{i}": i for i in range(300)}).end()


def nested(spans: Spans) -> None:
    tracer = spans.tracer()
    with tracer.start_as_current_span("outer", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("middle"):
            tracer.start_span("inner", kind=SpanKind.CLIENT).end()
        tracer.start_span("sibling").end()


def remote_parent(spans: Spans) -> None:
    # the child inherits the remote parent's trace_state; flags get the is_remote bit
    tracer = spans.tracer()
    context = trace_api.set_span_in_context(NonRecordingSpan(REMOTE_PARENT))
    with tracer.start_as_current_span("child of remote", context=context, kind=SpanKind.SERVER):
        tracer.start_span("grandchild").end()


def unsampled_flags(spans: Spans) -> None:
    # trace_flags (sampled or not) never reach Span.flags in the official encoder; the
    # SDK exports only sampled spans, so the unsampled one is made by hand
    tracer = spans.tracer()
    parent = SpanContext(trace_id=1, span_id=2, is_remote=False)
    context = trace_api.set_span_in_context(NonRecordingSpan(parent))
    tracer.start_span("local parent", context=context).end()
    spans.extra.append(
        ReadableSpan(
            name="unsampled",
            context=SpanContext(trace_id=5, span_id=6, is_remote=False),
            parent=REMOTE_PARENT,
            resource=RESOURCE,
            instrumentation_scope=InstrumentationScope("snowmon", "0.1.0"),
            start_time=10,
            end_time=20,
        )
    )


def events(spans: Spans) -> None:
    span = spans.tracer().start_span("with events")
    span.add_event("plain")
    span.add_event("attrs", {"k": "v", "n": 3, "seq": ["a"]}, timestamp=1_700_000_000_123_456_789)
    span.add_event("", timestamp=0)
    span.add_event("none attrs", None)
    with pytest.raises(ValueError, match="boom") as raised:  # for a traceback
        raise ValueError("boom")
    span.record_exception(raised.value)
    span.end()


def links(spans: Spans) -> None:
    local = SpanContext(trace_id=3, span_id=4, is_remote=False)
    span = spans.tracer().start_span(
        "with links",
        links=[
            Link(REMOTE_PARENT, {"link.kind": "follows", "n": 1}),  # trace_state is dropped
            Link(local),
            Link(local, {"seq": (1.5, 2.5)}),
        ],
    )
    span.end()


def statuses(spans: Spans) -> None:
    tracer = spans.tracer()
    for status in (
        Status(StatusCode.ERROR, "connection refused"),
        Status(StatusCode.ERROR),
        Status(StatusCode.OK),
        Status(StatusCode.UNSET),
    ):
        span = tracer.start_span(f"status {status.status_code.name}")
        span.set_status(status)
        span.end()


def times(spans: Spans) -> None:
    tracer = spans.tracer()
    tracer.start_span("explicit", start_time=1_700_000_000_000_000_000).end(
        end_time=1_700_000_000_250_000_000
    )
    tracer.start_span("zero start", start_time=0).end(end_time=1)


def dropped_counts(spans: Spans) -> None:
    limits = SpanLimits(
        max_span_attributes=2,
        max_events=1,
        max_links=1,
        max_event_attributes=1,
        max_link_attributes=1,
    )
    local = SpanContext(trace_id=3, span_id=4, is_remote=False)
    span = spans.tracer(limits=limits).start_span(
        "dropping",
        attributes={"a": 1, "b": 2, "c": 3},
        links=[Link(local, {"x": 1, "y": 2}), Link(local)],
    )
    span.add_event("e1", {"x": 1, "y": 2, "z": 3})
    span.add_event("e2")
    span.end()


def resources_and_scopes(spans: Spans) -> None:
    # interleaved: groups follow first appearance; equal resources (distinct objects)
    # merge; scopes differ by name, version, schema_url and attributes
    a = spans.tracer(RESOURCE)
    b = spans.tracer(Resource({"service.name": "other"}), name="other", version=None)
    a_v2 = spans.tracer(RESOURCE, version="0.2.0", schema_url="https://example.com/s")
    a_attrs = spans.tracer(RESOURCE, attributes={"scope.attr": "x", "n": 1})
    a_copy = spans.tracer(Resource(dict(RESOURCE.attributes), schema_url=RESOURCE.schema_url))
    empty = spans.tracer(Resource({}), name="")
    a.start_span("a1").end()
    b.start_span("b1").end()
    a_v2.start_span("a_v2").end()
    a.start_span("a2").end()
    a_attrs.start_span("a_attrs").end()
    a_copy.start_span("a_copy").end()
    empty.start_span("empty").end()
    b.start_span("b2").end()


CASES: dict[str, Callable[[Spans], None]] = {
    "minimal": minimal,
    "kinds": kinds,
    "scalar values": scalar_values,
    "sequence values": sequence_values,
    "mapping values": mapping_values,
    "non-ascii": non_ascii,
    "long values": long_values,
    "nested": nested,
    "remote parent": remote_parent,
    "unsampled flags": unsampled_flags,
    "events": events,
    "links": links,
    "statuses": statuses,
    "times": times,
    "dropped counts": dropped_counts,
    "resources and scopes": resources_and_scopes,
}


@pytest.fixture
def fallbacks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the batches handed to the official encoder."""
    calls: list[int] = []

    def spy(spans: Sequence[ReadableSpan]) -> Any:
        calls.append(len(spans))
        return encode_spans(spans)

    monkeypatch.setattr(otlp_encode, "encode_spans", spy)
    return calls


def assert_same_as_official(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    ours = encode_spans_bytes(spans)
    official = encode_spans(spans)
    decoded = ExportTraceServiceRequest.FromString(ours)
    assert decoded == official
    assert ours == official.SerializePartialToString()
    return decoded


@pytest.mark.parametrize("build", CASES.values(), ids=CASES.keys())
def test_matches_official_encoder(build: Callable[[Spans], None], fallbacks: list[int]) -> None:
    spans = Spans()
    build(spans)
    batch = spans.collect()
    assert batch
    assert_same_as_official(batch)
    assert fallbacks == []


def test_all_cases_in_one_batch(fallbacks: list[int]) -> None:
    spans = Spans()
    for build in CASES.values():
        build(spans)
    batch = spans.collect()
    assert_same_as_official(batch)
    assert_same_as_official(batch[::-1])
    assert fallbacks == []


def test_empty_batch(fallbacks: list[int]) -> None:
    assert encode_spans_bytes([]) == b""
    assert_same_as_official([])
    assert fallbacks == []


def test_grouping_follows_first_appearance() -> None:
    spans = Spans()
    resources_and_scopes(spans)
    request = assert_same_as_official(spans.collect())
    names = [
        [[span.name for span in scope.spans] for scope in resource.scope_spans]
        for resource in request.resource_spans
    ]
    assert names == [
        [["a1", "a2", "a_copy"], ["a_v2"], ["a_attrs"]],
        [["b1", "b2"]],
        [["empty"]],
    ]


def test_span_without_scope(fallbacks: list[int]) -> None:
    span, bare = beside_a_real_span(
        name="bare", attributes={"k": "v"}, instrumentation_scope=None, start_time=1, end_time=2
    )
    assert_same_as_official([span, bare, span])
    assert fallbacks == []


class Renamed(ReadableSpan):
    """A ReadableSpan whose properties disagree with its fields."""

    @property
    def name(self) -> str:
        return "renamed"

    @property
    def attributes(self) -> Any:
        return {"from": "property"}

    @property
    def events(self) -> Any:
        return ()


def test_spans_are_read_through_their_properties(
    fallbacks: list[int],
) -> None:
    spans = Spans()
    events(spans)
    (span,) = spans.collect()
    renamed = Renamed(
        name=span.name,
        context=span.context,
        resource=span.resource,
        attributes={"from": "field"},
        events=span.events,
        instrumentation_scope=span.instrumentation_scope,
    )
    request = assert_same_as_official([renamed])
    (encoded,) = request.resource_spans[0].scope_spans[0].spans
    assert encoded.name == "renamed"
    assert [kv.value.string_value for kv in encoded.attributes] == ["property"]
    assert not encoded.events
    assert fallbacks == []


FALLBACKS: dict[str, dict[str, Any]] = {
    "int above int64": {"big": 2**63},
    "int below int64": {"small": -(2**63) - 1},
    "int above int64 in a sequence": {"seq": [1, 2**64]},
    "lone surrogate value": {"bad": "\ud800"},
    "lone surrogate key": {"\udfff": "bad"},
    "bytes subclass": {"blob": Blob(b"\x01")},
}


@pytest.mark.parametrize("attributes", FALLBACKS.values(), ids=FALLBACKS.keys())
def test_unencodable_values_fall_back(attributes: dict[str, Any], fallbacks: list[int]) -> None:
    # The official encoder drops an attribute it cannot encode (and logs the error), or
    # encodes a type we do not handle; the whole batch goes through it.
    spans = Spans()
    tracer = spans.tracer()
    tracer.start_span("fine", attributes={"k": "v"}).end()
    tracer.start_span("odd", attributes={"ok": 1, **attributes}).end()
    batch = spans.collect()
    assert_same_as_official(batch)
    assert fallbacks == [2]


def test_type_the_sdk_would_not_produce_falls_back(fallbacks: list[int]) -> None:
    _, odd = beside_a_real_span(
        name="hand-made",
        attributes={"set": frozenset({1}), "ok": "v"},  # the official encoder drops "set"
    )
    request = assert_same_as_official([odd])
    assert [kv.key for kv in request.resource_spans[0].scope_spans[0].spans[0].attributes] == ["ok"]
    assert fallbacks == [1]


def test_raises_where_the_official_encoder_raises() -> None:
    _, bad = beside_a_real_span(name="\ud800", instrumentation_scope=None)
    with pytest.raises(Exception) as official:  # noqa: PT011 - whatever protobuf raises
        encode_spans([bad]).SerializePartialToString()
    with pytest.raises(type(official.value)):
        encode_spans_bytes([bad])


def test_cache_keeps_true_one_and_one_point_zero_apart(fallbacks: list[int]) -> None:
    values = [True, 1, 1.0, False, 0, 0.0, -0.0, 1, True]
    spans = Spans()
    tracer = spans.tracer()
    for value in values:
        tracer.start_span("cached", attributes={"k": value}).end()
    batch = spans.collect()
    # one batch per span (the cache fills from the first ones), then all together
    decoded = [assert_same_as_official([span]) for span in batch]
    assert_same_as_official(batch)
    assert fallbacks == []
    kinds = [
        request.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.WhichOneof("value")
        for request in decoded
    ]
    assert kinds == [
        "bool_value",
        "int_value",
        "double_value",
        "bool_value",
        "int_value",
        "double_value",
        "double_value",
        "int_value",
        "bool_value",
    ]
    zero, negative_zero = (
        decoded[i].resource_spans[0].scope_spans[0].spans[0].attributes[0].value.double_value
        for i in (5, 6)
    )
    assert math.copysign(1, zero) == 1
    assert math.copysign(1, negative_zero) == -1


def test_cache_bound_and_threads(monkeypatch: pytest.MonkeyPatch, fallbacks: list[int]) -> None:
    # a tiny bound makes the caches clear constantly while four threads encode
    monkeypatch.setattr(otlp_encode, "_KV_CACHE_MAX", 3)
    monkeypatch.setattr(otlp_encode, "_NAME_CACHE_MAX", 2)
    spans = Spans()
    tracer = spans.tracer()
    for i in range(50):
        tracer.start_span(f"s{i % 7}", attributes={"i": i, "c": f"conn-{i % 5}"}).end()
    batch = spans.collect()
    expected = encode_spans(batch).SerializePartialToString()
    results: list[bytes] = []

    def work() -> None:
        for _ in range(20):
            results.append(encode_spans_bytes(batch))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80
    assert all(result == expected for result in results)
    assert len(otlp_encode._KV_CACHE) <= 3
    assert fallbacks == []


@pytest.fixture
def restore_encoder() -> Iterator[None]:
    original = http_trace_exporter.encode_spans
    try:
        yield
    finally:
        http_trace_exporter.encode_spans = original


RECEIVED = web.AppKey("received", list[bytes])


async def receive(request: web.Request) -> web.Response:
    request.app[RECEIVED].append(await request.read())
    return web.Response(
        body=ExportTraceServiceResponse().SerializeToString(),
        content_type="application/x-protobuf",
    )


@pytest.mark.usefixtures("restore_encoder")
async def test_install_makes_the_exporter_send_our_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[int] = []
    original = otlp_encode.encode_spans_bytes

    def spy(spans: Sequence[ReadableSpan]) -> bytes:
        encoded.append(len(spans))
        return original(spans)

    monkeypatch.setattr(otlp_encode, "encode_spans_bytes", spy)
    assert install()
    assert install()  # idempotent
    assert http_trace_exporter.encode_spans is not encode_spans
    assert http_trace_exporter.encode_spans([]).SerializeToString() == b""
    encoded.clear()

    spans = Spans()
    for build in (nested, events, links, statuses, resources_and_scopes):
        build(spans)
    batch = spans.collect()

    app = web.Application()
    app[RECEIVED] = []
    app.router.add_post("/v1/traces", receive)
    async with serve(app) as url:
        exporter = OTLPSpanExporter(endpoint=str(url / "v1/traces"), timeout=5)
        try:
            result = await asyncio.to_thread(exporter.export, batch)
        finally:
            exporter.shutdown()
    assert result is SpanExportResult.SUCCESS
    assert encoded == [len(batch)]
    (body,) = app[RECEIVED]
    assert ExportTraceServiceRequest.FromString(body) == encode_spans(batch)
    assert body == encode_spans(batch).SerializePartialToString()


@pytest.mark.usefixtures("restore_encoder")
def test_install_without_encode_spans_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(http_trace_exporter, "encode_spans")
    assert not install()
    assert not hasattr(http_trace_exporter, "encode_spans")


def test_scope_and_resource_caches_hold_their_objects() -> None:
    # ids are only reused after an object dies; the caches keep theirs alive
    for i in range(3):
        resource = Resource({"i": i})
        scope = InstrumentationScope(f"scope-{i}")
        otlp_encode._resource_block(resource)
        otlp_encode._scope_block(scope)
        assert otlp_encode._RESOURCE_CACHE[id(resource)][0] is resource
        assert otlp_encode._SCOPE_CACHE[id(scope)][0] is scope
