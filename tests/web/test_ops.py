"""Health, readiness, metrics, errors and server spans over HTTP."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from monitor.clock import ManualClock
from monitor.web import app as web_app
from monitor.web.keys import METRICS_RENDER
from tests.web.conftest import ADMIN, READ, Client, bearer, make_app, serve
from tests.web.fakes import FakeFleet, FakeReadiness


async def test_healthz(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_when_ready_and_when_not(client: Client, readiness: FakeReadiness) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {
        "status": "ready",
        "checks": {"store": True, "scheduler": True, "config": True},
    }
    readiness.checks["store"] = False
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["store"] is False


async def test_readyz_when_the_check_itself_breaks(
    client: Client, readiness: FakeReadiness, caplog: pytest.LogCaptureFixture
) -> None:
    readiness.error = OSError("disk on fire")
    with caplog.at_level(logging.ERROR, logger="monitor.web"):
        response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {"status": "not_ready", "checks": {"readiness_check": False}}
    assert "disk on fire" not in await response.text()
    assert any(r.message == "web.readiness_failed" for r in caplog.records)


async def test_readyz_when_the_check_hangs(
    client: Client, readiness: FakeReadiness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_app, "READINESS_TIMEOUT", 0.05)
    gate = asyncio.Event()

    async def hang() -> dict[str, bool]:
        await gate.wait()
        return {}

    monkeypatch.setattr(readiness, "check", hang)
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"] == {"readiness_check": False}


async def test_metrics_keep_the_renderers_content_type(client: Client) -> None:
    plain = await client.get("/metrics")
    assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert plain.headers["Content-Length"] == str(len(b"snowmon_up 1\n"))
    assert "Transfer-Encoding" not in plain.headers
    assert await plain.read() == b"snowmon_up 1\n"
    open_metrics = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert open_metrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await open_metrics.read()).endswith(b"# EOF\n")


async def _raw(port: int, request: bytes, *, read: bool = True) -> bytes:
    """Send `request` on a plain socket; what came back until the server closed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await reader.read() if read else await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        await writer.wait_closed()


async def test_metrics_head_has_the_length_and_no_body(client: Client) -> None:
    port = client.server.port
    assert port is not None
    answer = await _raw(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nContent-Length: 13\r\n" in head + b"\r\n"  # len(b"snowmon_up 1\n")
    assert rest == b""  # not one byte of body after the headers


async def test_a_scraper_that_hangs_up_mid_exposition_is_no_server_error(
    fleet: FakeFleet, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A large fleet's exposition outlasts a scraper's timeout: the handler stops writing,
    logs the hang-up and raises nothing (no 500, no `web.unhandled_error`). Served like
    the daemon serves it (aiohttp's test server would cancel the handler instead)."""
    caplog.set_level(logging.INFO, logger="monitor.web")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = make_app(fleet, clock, tracer_provider=provider)
    app[METRICS_RENDER] = lambda accept: ([b"#" * 1_048_575 + b"\n"] * 64, "text/plain")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        headers = await _raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", read=False)
        assert headers.startswith(b"HTTP/1.1 200 ")
        async with asyncio.timeout(10):  # the handler ends once a write meets the hang-up
            while not exporter.get_finished_spans():  # noqa: ASYNC110 - the SDK's export
                await asyncio.sleep(0.01)
    finally:
        await runner.cleanup()
        provider.shutdown()
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is not StatusCode.ERROR
    events = [r.getMessage() for r in caplog.records]
    assert "web.metrics_client_gone" in events
    assert "web.unhandled_error" not in events


async def test_unknown_path_and_wrong_method_are_json(client: Client) -> None:
    missing = await client.get("/api/v1/nothing", headers=bearer(READ))
    assert missing.status == 404
    assert (await missing.json())["error"] == "not_found"
    wrong = await client.delete("/api/v1/connections/acme-prod", headers=bearer(ADMIN))
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "GET,HEAD"
    assert await wrong.json() == {
        "error": "method_not_allowed",
        "message": "This address does not accept that method.",
        "status": 405,
    }


async def test_an_unexpected_exception_is_a_bare_json_500_and_logged(
    fleet: FakeFleet, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> Any:
        raise RuntimeError("secret internals at line 42")

    fleet.statuses = explode  # type: ignore[method-assign]
    client = await serve(make_app(fleet, clock))
    try:
        with caplog.at_level(logging.ERROR, logger="monitor.web"):
            response = await client.get("/api/v1/summary", headers=bearer(READ))
            page = await client.get("/", headers={**bearer(READ), "Accept": "text/html"})
        assert response.status == 500
        assert await response.json() == {
            "error": "internal",
            "message": "internal error",
            "status": 500,
        }
        assert page.status == 500
        assert "secret internals" not in await page.text()
        assert "Traceback" not in await page.text()
        [first, _] = [r for r in caplog.records if r.message == "web.unhandled_error"]
        assert first.exc_info is not None
    finally:
        await client.close()


async def test_server_spans_follow_the_stable_http_conventions(
    fleet: FakeFleet, clock: ManualClock
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = await serve(make_app(fleet, clock, tracer_provider=provider))
    try:
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        await client.get(
            "/api/v1/connections/acme-prod?history=2",
            headers={**bearer(READ), "traceparent": parent},
        )
        await client.get("/api/v1/connections/ghost", headers=bearer(READ))
        await client.get("/nowhere")
        await client.get(f"/?token={READ}", allow_redirects=False)
    finally:
        await client.close()
        provider.shutdown()
    ok, missing, nowhere, page = exporter.get_finished_spans()
    assert ok.name == "GET /api/v1/connections/{id}"
    assert ok.kind is SpanKind.SERVER
    assert dict(ok.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/api/v1/connections/acme-prod",
        "url.scheme": "http",
        "http.route": "/api/v1/connections/{id}",
        "http.response.status_code": 200,
    }
    assert ok.context is not None
    assert ok.parent is not None
    assert f"{ok.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert missing.attributes is not None
    assert missing.attributes["http.response.status_code"] == 404
    assert missing.status.status_code is StatusCode.UNSET  # a 4xx is not a server error
    assert nowhere.name == "GET"
    assert nowhere.attributes is not None
    assert "http.route" not in nowhere.attributes
    assert page.attributes is not None
    assert all(READ not in str(v) for v in page.attributes.values())


async def test_a_500_marks_its_span_as_an_error(fleet: FakeFleet, clock: ManualClock) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def explode() -> Any:
        raise RuntimeError("boom")

    fleet.statuses = explode  # type: ignore[method-assign]
    client = await serve(make_app(fleet, clock, tracer_provider=provider))
    try:
        assert (await client.get("/api/v1/summary", headers=bearer(READ))).status == 500
    finally:
        await client.close()
        provider.shutdown()
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "500"
