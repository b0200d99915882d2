"""The daemon's own spans, from a real run against the emulator: operation spans
(`probe`, `token.grant`, `token.refresh`) carry the connection and the outcome, a failed
operation has status Error, every HTTP request is a CLIENT span under its operation, and
the probe repeated after a 401 says it is a resend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from yarl import URL

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.emulator import Emulator, FleetOptions
from monitor.probe import ProbeTarget
from monitor.telemetry import Telemetry, TelemetrySettings
from monitor.telemetry.redact import redact_url
from tests.daemon.configs import write_config


async def _until(check: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.1)


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        s
        for s in spans
        if s.parent is not None
        and s.parent.span_id == parent.context.span_id
        and s.parent.trace_id == parent.context.trace_id
    ]


async def test_operation_spans_from_a_real_run(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    telemetry = Telemetry.create(
        TelemetrySettings(traces="otlp", schedule_delay=0.05), exporter=exporter
    )
    async with Emulator(FleetOptions(instances=2, speed=30.0, seed=52)) as emu:
        path, _ = write_config(emu.fleet_info(), tmp_path, probe_interval=20)
        daemon = Daemon(load_config(path).config, telemetry=telemetry, registry=telemetry.registry)
        revoked = emu.instances[0].name
        async with asyncio.TaskGroup() as group:
            group.create_task(daemon.run())
            try:
                await asyncio.wait_for(daemon.started.wait(), 10)
                await _until(lambda: sum(emu.totals().table_requests.values()) >= 2, "probes")
                # Every token of the first instance dies: its next probe gets a 401, the
                # refresh is rejected, a password grant succeeds, and the probe is repeated.
                emu.revoke(revoked)
                await _until(
                    lambda: any(
                        (s.attributes or {}).get("http.request.resend_count") == 1
                        for s in exporter.get_finished_spans()
                    ),
                    "the probe repeated after a 401",
                )
            finally:
                daemon.stop.set()
    telemetry.shutdown()
    spans = list(exporter.get_finished_spans())

    probes = [s for s in spans if s.name == "probe"]
    assert probes
    for span in probes:
        attrs = dict(span.attributes or {})
        assert span.kind is SpanKind.INTERNAL
        assert attrs["snowmon.connection"] in {i.name for i in emu.instances}
        assert str(attrs["server.address"]).startswith("127.0.0.")  # the host, not a URL
        assert "snowmon.outcome" in attrs
        gets = [c for c in _children(spans, span) if c.kind is SpanKind.CLIENT]
        assert gets, "a probe without its HTTP request span"
        assert all(c.name == "GET" for c in gets)
        # The probe's URL as shown is worked out once per connection (`ProbeRequest`):
        # the same as the hooks would show for the URL actually requested.
        (instance,) = [i for i in emu.instances if i.name == attrs["snowmon.connection"]]
        sent = URL(ProbeTarget(instance.base_url).url())
        for get in gets:
            get_attrs = dict(get.attributes or {})
            assert get_attrs["url.full"] == redact_url(sent)
            assert get_attrs["server.address"] == attrs["server.address"] == sent.raw_host

    grants = [s for s in spans if s.name == "token.grant"]
    assert {dict(s.attributes or {})["snowmon.connection"] for s in grants} >= {
        i.name for i in emu.instances
    }
    for span in grants:
        posts = [c for c in _children(spans, span) if c.kind is SpanKind.CLIENT]
        assert [c.name for c in posts] == ["POST"]

    refused = [
        s
        for s in spans
        if s.name == "token.refresh" and dict(s.attributes or {})["snowmon.connection"] == revoked
    ]
    assert refused
    assert all(s.status.status_code is StatusCode.ERROR for s in refused)
    assert all(dict(s.attributes or {})["snowmon.outcome"] != "ok" for s in refused)

    (again,) = [s for s in spans if (s.attributes or {}).get("http.request.resend_count") == 1][:1]
    assert again.name == "GET"
    assert again.parent is not None
    (owner,) = [
        s for s in probes if s.context is not None and s.context.span_id == again.parent.span_id
    ]
    assert dict(owner.attributes or {})["snowmon.connection"] == revoked
    assert dict(owner.attributes or {})["snowmon.outcome"] == "ok"
