"""The shared HTTP client against real loopback servers: spans, log lines, metrics,
redaction, the body cap, transport failure kinds and the connection-pool gauge."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import generate_latest
from yarl import URL

from monitor import __version__
from monitor.config_settings import HttpConfig
from monitor.http import (
    CONNECTION,
    BodyTooLarge,
    HttpSettings,
    RequestNote,
    build_session,
    classify_target,
    read_body,
    transport_failure,
)
from monitor.telemetry import Telemetry
from monitor.telemetry.metrics import render
from tests.telemetry.helpers import (
    JsonLines,
    capture_logs,
    closed_port,
    make_telemetry,
    sample_value,
    serve,
)

TOKEN = "Ab3_" * 21 + "x-"  # 86 base64url characters, like a ServiceNow token
assert len(TOKEN) == 86
HOLD = web.AppKey("hold", dict[str, asyncio.Event])


def _reset(request: web.Request) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), not a clean FIN."""
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def table(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "result": [],
            "user_agent": request.headers.get("User-Agent"),
            "cookie": request.headers.get("Cookie"),
        }
    )


async def token(request: web.Request) -> web.Response:
    return web.json_response(
        {"error_description": "access_denied", "error": "server_error"}, status=401
    )


async def set_cookie(request: web.Request) -> web.Response:
    resp = web.json_response({"result": []})
    resp.set_cookie("JSESSIONID", "session-of-another-connection")
    return resp


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.Response(text="late")


async def abort_before(request: web.Request) -> web.Response:
    _reset(request)
    await asyncio.sleep(0.1)
    return web.Response(text="never")


async def _partial(request: web.Request, *, chunked: bool, rst: bool) -> web.StreamResponse:
    resp = web.StreamResponse()
    if chunked:
        resp.enable_chunked_encoding()
    else:
        resp.content_length = 1000
    await resp.prepare(request)
    await resp.write(b"x" * 100)
    await asyncio.sleep(0.02)
    if rst:
        _reset(request)
    else:
        assert request.transport is not None
        request.transport.close()
    await asyncio.sleep(0.1)
    return resp


async def abort_mid(request: web.Request) -> web.StreamResponse:
    return await _partial(request, chunked=False, rst=True)


async def short_body(request: web.Request) -> web.StreamResponse:
    return await _partial(request, chunked=False, rst=False)


async def truncated_chunked(request: web.Request) -> web.StreamResponse:
    return await _partial(request, chunked=True, rst=False)


async def big(request: web.Request) -> web.Response:
    return web.Response(body=b"y" * int(request.query["n"]))


async def big_chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(int(request.query["n"]) // 1000):
        await resp.write(b"z" * 1000)
    await resp.write_eof()
    return resp


async def gzip_bomb(request: web.Request) -> web.Response:
    body = gzip.compress(b"\0" * 1_000_000)  # ~1 kB on the wire
    return web.Response(body=body, headers={"Content-Encoding": "gzip"})


async def hold(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(b"first")
    await request.app[HOLD][request.query["k"]].wait()
    await resp.write_eof()
    return resp


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/api/now/table/sys_user")


async def webhook(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app() -> web.Application:
    app = web.Application()
    app[HOLD] = {k: asyncio.Event() for k in "abc"}
    app.router.add_get("/api/now/table/sys_user", table)
    app.router.add_post("/oauth_token.do", token)
    app.router.add_get("/set-cookie", set_cookie)
    app.router.add_get("/slow", slow)
    app.router.add_get("/abort-before", abort_before)
    app.router.add_get("/abort-mid", abort_mid)
    app.router.add_get("/short", short_body)
    app.router.add_get("/truncated-chunked", truncated_chunked)
    app.router.add_get("/big", big)
    app.router.add_get("/big-chunked", big_chunked)
    app.router.add_get("/gzip-bomb", gzip_bomb)
    app.router.add_get("/hold", hold)
    app.router.add_get("/redirect", redirect)
    app.router.add_post("/services/{tail:.*}", webhook)
    return app


@pytest.fixture
async def app() -> web.Application:
    return make_app()


@pytest.fixture
async def base(app: web.Application) -> AsyncIterator[URL]:
    async with serve(app) as url:
        yield url


@pytest.fixture
def recorded() -> tuple[Telemetry, InMemorySpanExporter]:
    return make_telemetry()


@pytest.fixture
def telemetry(recorded: tuple[Telemetry, InMemorySpanExporter]) -> Telemetry:
    return recorded[0]


@pytest.fixture
def spans(recorded: tuple[Telemetry, InMemorySpanExporter]) -> InMemorySpanExporter:
    return recorded[1]


@pytest.fixture
def logs() -> Iterator[JsonLines]:
    with capture_logs() as handler:
        yield handler


SETTINGS = HttpSettings(connect_timeout=2.0, request_timeout=3.0, max_body_bytes=4096)


@pytest.fixture
async def session(telemetry: Telemetry) -> AsyncIterator[aiohttp.ClientSession]:
    async with build_session(SETTINGS, telemetry) as sess:
        yield sess


# --- spans, log lines, metrics on real requests -------------------------------------


async def test_request_is_a_client_span_under_the_operation_span(
    session: aiohttp.ClientSession,
    base: URL,
    telemetry: Telemetry,
    spans: InMemorySpanExporter,
    logs: JsonLines,
) -> None:
    url = base / "api/now/table/sys_user" % {"sysparm_limit": "1"}
    token_ = CONNECTION.set("acme-prod")
    try:
        with telemetry.tracer.start_as_current_span("probe") as probe:
            async with session.get(url) as resp:
                body = await resp.json()
    finally:
        CONNECTION.reset(token_)

    assert body["user_agent"] == f"snowmon/{__version__}"
    http_span, probe_span = spans.get_finished_spans()
    assert probe_span.name == "probe"
    assert http_span.name == "GET"
    assert http_span.kind is SpanKind.CLIENT
    assert http_span.parent is not None
    assert http_span.parent.span_id == probe.get_span_context().span_id
    assert http_span.context is not None
    assert http_span.context.trace_id == probe.get_span_context().trace_id
    assert dict(http_span.attributes or {}) == {
        "http.request.method": "GET",
        "url.full": str(url),
        "server.address": "127.0.0.1",
        "server.port": base.port,
        "http.response.status_code": 200,
        "snowmon.connection": "acme-prod",
    }
    assert http_span.status.status_code is StatusCode.UNSET

    (line,) = logs.events("http.request")
    assert line["logger"] == "snowmon.http"
    assert line["level"] == "info"
    assert line["method"] == "GET"
    assert line["url"] == str(url)
    assert line["status"] == 200
    assert line["outcome"] == "2xx"
    assert line["target"] == "table"
    assert line["connection"] == "acme-prod"
    assert isinstance(line["duration_ms"], float)
    assert 0 < line["duration_ms"] < 3000
    assert line["trace_id"] == format(http_span.context.trace_id, "032x")
    assert line["span_id"] == format(http_span.context.span_id, "016x")

    labels = {"method": "GET", "target": "table", "status_class": "2xx"}
    count = sample_value(
        telemetry.registry, "snowmon_http_client_request_duration_seconds_count", labels
    )
    assert count == 1


async def test_error_status_marks_span_and_counts_with_exemplar(
    session: aiohttp.ClientSession,
    base: URL,
    telemetry: Telemetry,
    spans: InMemorySpanExporter,
    logs: JsonLines,
) -> None:
    async with session.post(base / "oauth_token.do", data={"grant_type": "password"}) as resp:
        assert resp.status == 401
    (span,) = spans.get_finished_spans()
    assert span.name == "POST"
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 401
    assert span.attributes["error.type"] == "401"
    assert span.status.status_code is StatusCode.ERROR
    (line,) = logs.events("http.request")
    assert line["outcome"] == "4xx"
    assert line["target"] == "token"

    assert span.context is not None
    trace_id = format(span.context.trace_id, "032x")
    text, content_type = render(telemetry.registry, "application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")
    bucket = next(
        row
        for row in text.decode().splitlines()
        if row.startswith("snowmon_http_client_request_duration_seconds_bucket")
        and 'target="token"' in row
        and 'status_class="4xx"' in row
        and "# {" in row
    )
    assert f'trace_id="{trace_id}"' in bucket


async def test_resend_count_comes_from_trace_request_ctx(
    session: aiohttp.ClientSession, base: URL, spans: InMemorySpanExporter
) -> None:
    async with session.post(base / "oauth_token.do", trace_request_ctx=RequestNote(resend=2)):
        pass
    async with session.post(base / "oauth_token.do"):
        pass
    retried, first = spans.get_finished_spans()
    assert retried.attributes is not None
    assert first.attributes is not None
    assert retried.attributes["http.request.resend_count"] == 2
    assert "http.request.resend_count" not in first.attributes


async def test_redirect_is_two_spans(
    session: aiohttp.ClientSession, base: URL, spans: InMemorySpanExporter, logs: JsonLines
) -> None:
    async with session.get(base / "redirect") as resp:
        assert resp.status == 200
    hop1, hop2 = spans.get_finished_spans()
    assert hop1.attributes is not None
    assert hop2.attributes is not None
    assert hop1.attributes["http.response.status_code"] == 302
    assert "http.request.resend_count" not in hop1.attributes
    assert hop2.attributes["url.full"] == str(base / "api/now/table/sys_user")
    assert hop2.attributes["http.request.resend_count"] == 1
    assert [line["outcome"] for line in logs.events("http.request")] == ["3xx", "2xx"]


async def test_secrets_never_reach_spans_logs_or_metrics(
    session: aiohttp.ClientSession,
    base: URL,
    telemetry: Telemetry,
    spans: InMemorySpanExporter,
    logs: JsonLines,
) -> None:
    callback = base.with_user("admin").with_password("hunter2") / "api/now/table/sys_user"
    callback = callback.with_query(
        {"code": TOKEN, "state": "st4te-value", "sysparm_limit": "1", "other": TOKEN}
    )
    async with session.get(callback):
        pass
    hook = base / "services/T0001/B0002/webhooksecret123"
    async with session.post(hook, json={"text": "hi"}):
        pass

    secrets = (TOKEN, "st4te-value", "hunter2", "webhooksecret123", "T0001")
    exposition, _ = render(telemetry.registry, "application/openmetrics-text")
    dumps = [json.dumps(dict(s.attributes or {})) for s in spans.get_finished_spans()]
    for text in [*dumps, *logs.raw, exposition.decode()]:
        for secret in secrets:
            assert secret not in text
    get_span, post_span = spans.get_finished_spans()
    assert get_span.attributes is not None
    assert post_span.attributes is not None
    assert get_span.attributes["url.full"] == (
        f"http://127.0.0.1:{base.port}/api/now/table/sys_user"
        "?code=REDACTED&state=REDACTED&sysparm_limit=1&other=REDACTED"
    )
    assert post_span.attributes["url.full"] == f"http://127.0.0.1:{base.port}/services/REDACTED"
    assert [line["target"] for line in logs.events("http.request")] == ["table", "slack"]


async def test_session_keeps_no_cookies_and_has_explicit_timeouts(
    session: aiohttp.ClientSession, base: URL
) -> None:
    async with session.get(base / "set-cookie"):
        pass
    async with session.get(base / "api/now/table/sys_user") as resp:
        assert (await resp.json())["cookie"] is None
    timeout = session.timeout
    assert (timeout.total, timeout.connect, timeout.sock_read) == (3.0, 2.0, None)
    connector = session.connector
    assert isinstance(connector, aiohttp.TCPConnector)
    assert (connector.limit, connector.limit_per_host) == (1000, 4)


# --- the body cap ---------------------------------------------------------------------


async def test_read_body_within_limit(session: aiohttp.ClientSession, base: URL) -> None:
    async with session.get(base / "big" % {"n": "4096"}) as resp:
        assert await read_body(resp, 4096) == b"y" * 4096


@pytest.mark.parametrize(
    ("path", "announced"),
    [("big?n=5000", 5000), ("big-chunked?n=50000", None), ("gzip-bomb", None)],
)
async def test_read_body_refuses_more_than_limit(
    session: aiohttp.ClientSession, base: URL, path: str, announced: int | None
) -> None:
    async with session.get(base.join(URL(path))) as resp:
        with pytest.raises(BodyTooLarge) as caught:
            await read_body(resp, 4096)
    assert caught.value.size == announced
    assert transport_failure(caught.value) == "bad_response"


# --- transport failure kinds, each for real ---------------------------------------------


async def _failure_of(session: aiohttp.ClientSession, url: URL | str) -> BaseException:
    try:
        async with session.get(url) as resp:
            await read_body(resp, 1_000_000)
    except Exception as exc:  # noqa: BLE001 the test inspects whatever was raised
        return exc
    raise AssertionError(f"{url} did not fail")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("abort-before", "reset"),
        ("abort-mid", "reset"),
        ("short", "bad_response"),
        ("truncated-chunked", "bad_response"),
    ],
)
async def test_failure_kinds_from_a_misbehaving_server(
    session: aiohttp.ClientSession, base: URL, path: str, kind: str
) -> None:
    exc = await _failure_of(session, base / path)
    assert transport_failure(exc) == kind, repr(exc)


async def test_timeout(telemetry: Telemetry, base: URL, spans: InMemorySpanExporter) -> None:
    settings = HttpSettings(connect_timeout=1.0, request_timeout=0.2)
    async with build_session(settings, telemetry) as session:
        started = time.monotonic()
        exc = await _failure_of(session, base / "slow")
    assert transport_failure(exc) == "timeout"
    assert time.monotonic() - started < 1.5
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "timeout"
    assert span.status.status_code is StatusCode.ERROR


async def test_connect_refused(
    session: aiohttp.ClientSession, telemetry: Telemetry, logs: JsonLines
) -> None:
    exc = await _failure_of(session, f"http://127.0.0.1:{closed_port()}/api/now/table/x")
    assert transport_failure(exc) == "connect"
    (line,) = logs.events("http.request")
    assert line["outcome"] == "connect"
    assert line["status"] is None
    labels = {"method": "GET", "target": "table", "status_class": "error"}
    count = sample_value(
        telemetry.registry, "snowmon_http_client_request_duration_seconds_count", labels
    )
    assert count == 1


async def test_dns_failure_is_quick_and_offline(session: aiohttp.ClientSession) -> None:
    started = time.monotonic()
    exc = await _failure_of(session, "http://snowmon-test.invalid/api/now/table/sys_user")
    assert transport_failure(exc) == "dns"
    assert time.monotonic() - started < 2.0


async def test_tls_to_a_plain_http_port(session: aiohttp.ClientSession, base: URL) -> None:
    exc = await _failure_of(session, base.with_scheme("https") / "api/now/table/sys_user")
    assert transport_failure(exc) == "tls"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (asyncio.CancelledError(), None),
        (ValueError("a bug"), None),
        (KeyError("a bug"), None),
        (aiohttp.InvalidURL("nope"), None),
        (ConnectionResetError(), "reset"),
        (ConnectionRefusedError(), "connect"),
        (socket.gaierror(), "dns"),
        (aiohttp.ServerDisconnectedError(), "reset"),
        (aiohttp.ClientPayloadError("Response payload is not completed"), "bad_response"),
    ],
)
def test_transport_failure_mapping(exc: BaseException, kind: str | None) -> None:
    assert transport_failure(exc) == kind


async def test_cancelled_request_ends_its_span(
    session: aiohttp.ClientSession, base: URL, spans: InMemorySpanExporter, telemetry: Telemetry
) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1), session.get(base / "slow"):
            pass
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "cancelled"
    gauge = sample_value(telemetry.registry, "snowmon_http_client_connections_in_use", {})
    assert gauge == 0


# --- the pool gauge -----------------------------------------------------------------


async def test_connections_in_use_follows_checkout_and_release(
    session: aiohttp.ClientSession, base: URL, app: web.Application, telemetry: Telemetry
) -> None:
    def in_use() -> float:
        return sample_value(telemetry.registry, "snowmon_http_client_connections_in_use", {})

    first = await session.get(base / "hold" % {"k": "a"})
    second = await session.get(base / "hold" % {"k": "b"})
    assert in_use() == 2
    app[HOLD]["a"].set()
    await first.read()
    assert in_use() == 1
    app[HOLD]["b"].set()
    await second.read()
    assert in_use() == 0
    # A kept-alive connection is reused: counted while in use, released after.
    third = await session.get(base / "hold" % {"k": "c"})
    assert in_use() == 1
    app[HOLD]["c"].set()
    await third.read()
    assert in_use() == 0
    # A small body arrives with the headers: aiohttp hands the connection back to the
    # pool before the caller reads, and so does the gauge.
    async with session.get(base / "api/now/table/sys_user") as resp:
        assert in_use() == 0
        await resp.read()
    await _failure_of(session, base / "abort-before")
    assert in_use() == 0
    exposition = generate_latest(telemetry.registry).decode()
    assert "snowmon_http_client_connections_in_use 0.0" in exposition


def test_classify_target() -> None:
    def target(url: str) -> str:
        return classify_target(URL(url))

    assert target("https://acme.service-now.com/oauth_token.do") == "token"
    assert target("https://acme.service-now.com/oauth_auth.do?x=1") == "authorize"
    assert target("https://acme.service-now.com/api/now/table/sys_user") == "table"
    assert target("https://acme.service-now.com/api/now/v2/table/incident") == "table"
    assert target("https://acme.service-now.com/api/now/stats/incident") == "other"
    assert target("http://127.0.0.5:9000/dev100042/api/now/table/sys_user") == "table"
    assert target("https://slack.com/api/chat.postMessage") == "slack"
    assert target("https://hooks.slack.com/services/T/B/X") == "slack"
    assert target("http://127.0.0.1:9000/api/chat.update") == "slack"
    assert target("http://127.0.0.1:9000/") == "other"


def test_the_config_defaults_are_the_session_defaults() -> None:
    # `[http]` in the config and `HttpSettings` declare their defaults apart; the daemon
    # builds one from the other, and tests build sessions from `HttpSettings()` alone.
    assert HttpSettings(**HttpConfig().model_dump()) == HttpSettings()
