"""The shared HTTP client: one `aiohttp.ClientSession` for ServiceNow and Slack.

It owns what every outgoing request has in common: explicit timeouts (aiohttp's default
is five minutes), pool limits with keep-alive per host, a User-Agent, no cookie jar
(ServiceNow session cookies of one connection must never ride on another's request), a
response-size cap (`read_body`), the mapping of transport exceptions to a small set of
kinds (`transport_failure`), and the hooks that make every request one CLIENT span, one
JSON log line and one histogram observation, with secrets redacted from the URL.

The span, log line and histogram cover a request up to its response headers (where
aiohttp's `on_request_end` fires, like the OpenTelemetry aiohttp instrumentation); a body
that fails later surfaces through `read_body` and `transport_failure` to the caller, whose
operation span (`probe`, `token.refresh`) records the outcome. Redirects are one span per
hop, the later ones with `http.request.resend_count`.

`snowmon_http_client_connections_in_use` counts connections a request took from the pool
(new or kept-alive: `on_connection_create_end`, `on_connection_reuseconn`) until the
response gives them back (body read to the end, `release()`, `close()`), through the
callback aiohttp's `Connection.add_callback` runs on release. A small body that arrives
with the headers is returned to the pool before the caller even reads it.

It never decides what a response means: that is oauth.py's and probe.py's job.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Final, cast

import aiohttp
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from yarl import URL

from monitor import __version__
from monitor.telemetry.context import CONNECTION, exemplar_of
from monitor.telemetry.metrics import Metrics
from monitor.telemetry.redact import redact_url
from monitor.telemetry.setup import Telemetry

__all__ = [
    "CONNECTION",
    "USER_AGENT",
    "BodyTooLarge",
    "HttpSettings",
    "RequestNote",
    "build_session",
    "classify_target",
    "read_body",
    "trace_config",
    "transport_failure",
]

USER_AGENT: Final = f"snowmon/{__version__}"
_log = logging.getLogger("snowmon.http")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The `[http]` section of the configuration."""

    connect_timeout: float = 5.0  # pool wait + TCP + TLS
    request_timeout: float = 15.0  # whole request, pool wait and body included
    max_body_bytes: int = 1_048_576
    pool_limit: int = 1000
    pool_limit_per_host: int = 4
    keepalive_timeout: float = 3.0  # idle connections closed after this long
    dns_cache_ttl: int = 300


@dataclass(frozen=True, slots=True)
class RequestNote:
    """`trace_request_ctx` of a request: what the hooks need not work out again.

    `resend` > 0 marks a repeat of an earlier request: the span's
    `http.request.resend_count` (1 for the first retry). `shown` and `target` are the
    request URL as `redact_url` shows it and its `classify_target`, from a caller that
    sends the same URL over and over (the probe) and worked them out once; redirect hops
    are always worked out from their own URL.
    """

    resend: int = 0
    shown: str | None = None
    target: str | None = None


class BodyTooLarge(Exception):
    """A response body exceeded the configured cap; the connection was closed."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        self.limit = limit
        self.size = size
        told = f" (Content-Length {size})" if size is not None else ""
        super().__init__(f"response body larger than {limit} bytes{told}")


def build_session(settings: HttpSettings, telemetry: Telemetry) -> aiohttp.ClientSession:
    """The one ClientSession of the process. Call inside the running loop; close it last."""
    connector = aiohttp.TCPConnector(
        limit=settings.pool_limit,
        limit_per_host=settings.pool_limit_per_host,
        keepalive_timeout=settings.keepalive_timeout,
        ttl_dns_cache=settings.dns_cache_ttl,
    )
    # No sock_read: `total` already bounds every read, and a read timeout re-arms a timer
    # on every chunk received.
    timeout = aiohttp.ClientTimeout(
        total=settings.request_timeout,
        connect=settings.connect_timeout,
        sock_connect=settings.connect_timeout,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
        cookie_jar=aiohttp.DummyCookieJar(),
        trace_configs=[trace_config(telemetry.tracer, telemetry.metrics)],
    )


async def read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The (decompressed) body, read in chunks; `BodyTooLarge` past `limit` bytes.

    Content-Length is only used to refuse early: a server may send more than it announced,
    or nothing at all, and gzip may inflate a small body into a huge one.
    """
    announced = resp.content_length
    if announced is not None:
        if announced > limit:
            resp.close()
            raise BodyTooLarge(limit, announced)
        if "Content-Encoding" not in resp.headers:
            # Identity body of a known length: aiohttp reads exactly `announced` bytes.
            return await resp.read()
    body = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        body += chunk
        if len(body) > limit:
            resp.close()
            raise BodyTooLarge(limit)
    return bytes(body)


_RESET_ERRNOS: Final = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


def transport_failure(exc: BaseException) -> str | None:
    """The kind of transport failure `exc` is: "timeout", "dns", "connect", "tls",
    "reset" or "bad_response"; None when it is no transport failure (a bug: re-raise).

    Cancellation is never a transport failure. A body cut short by a TCP reset shows up
    in aiohttp only as a ClientPayloadError whose message names ConnectionResetError.
    """
    if isinstance(exc, asyncio.CancelledError):
        return None
    if isinstance(exc, TimeoutError):  # also aiohttp's ServerTimeoutError family
        return "timeout"
    if isinstance(exc, BodyTooLarge):
        return "bad_response"
    if isinstance(exc, aiohttp.ClientError):
        return _client_error_kind(exc)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ConnectionRefusedError):
        return "connect"
    if isinstance(exc, ConnectionError):
        return "reset"
    return None


def _client_error_kind(exc: aiohttp.ClientError) -> str | None:
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return "tls"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            return "dns"
        if isinstance(exc.os_error, ssl.SSLError):
            return "tls"
        return "connect"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "reset" if "ConnectionResetError" in str(exc) else "bad_response"
    if isinstance(exc, aiohttp.ClientResponseError):  # ContentTypeError, TooManyRedirects,
        return "bad_response"  # and responses aiohttp could not parse
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientConnectionResetError):
        return "reset"
    if isinstance(exc, aiohttp.ClientOSError):
        return "reset" if exc.errno in _RESET_ERRNOS or exc.errno is None else "connect"
    if isinstance(exc, aiohttp.ClientConnectionError):
        return "reset"
    return None  # InvalidURL, NonHttpUrlClientError, ...: the caller's bug


def classify_target(url: URL) -> str:
    """Bounded metric label for what a request talks to."""
    path = url.raw_path
    if path.endswith("/oauth_token.do"):
        return "token"
    # "/api/now/" anywhere: a loopback (emulator) instance URL may carry a path prefix.
    if "/api/now/" in path and "/table/" in path:
        return "table"
    if path.endswith("/oauth_auth.do"):
        return "authorize"
    host = url.raw_host or ""
    if host == "slack.com" or host.endswith(".slack.com") or path.startswith("/services/"):
        return "slack"
    if path.startswith("/api/"):
        method = path[5:]
        if "/" not in method and "." in method:  # Slack Web API: /api/chat.postMessage
            return "slack"
    return "other"


_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


class _RequestState(SimpleNamespace):
    """What the hooks keep for one request (aiohttp makes one per request)."""

    trace_request_ctx: object
    span: trace.Span
    start: float
    method: str
    url: str
    target: str
    connection: str | None
    resend: int
    held: int


class _Hooks:
    def __init__(self, tracer: trace.Tracer, metrics: Metrics) -> None:
        self.tracer = tracer
        self.metrics = metrics

    def begin(
        self, st: _RequestState, method: str, url: URL, resend: int, note: RequestNote | None
    ) -> None:
        method = method.upper()
        known = method if method in _METHODS else "_OTHER"
        st.method = known
        shown = note.shown if note is not None else None
        st.url = shown if shown is not None else redact_url(url)
        target = note.target if note is not None else None
        st.target = target if target is not None else classify_target(url)
        st.resend = resend
        st.start = time.perf_counter()
        attrs: dict[str, str | int] = {
            "http.request.method": known,
            "url.full": st.url,
            "server.address": url.raw_host or "",
        }
        if url.port is not None:
            attrs["server.port"] = url.port
        if known == "_OTHER":
            attrs["http.request.method_original"] = method
        if st.connection is not None:
            attrs["snowmon.connection"] = st.connection
        if resend > 0:
            attrs["http.request.resend_count"] = resend
        name = known if known != "_OTHER" else "HTTP"
        st.span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs)

    def finish(self, st: _RequestState, status: int | None, failure: str | None) -> None:
        elapsed = time.perf_counter() - st.start
        span = st.span
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            status_class = f"{status // 100}xx" if 200 <= status < 600 else "error"
            outcome = status_class
            if status >= 400:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
        else:
            status_class = "error"
            outcome = failure or "error"
            span.set_attribute("error.type", outcome)
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()
        exemplar = exemplar_of(span)
        self.metrics.http_request(st.method, st.target, status_class, elapsed, exemplar)
        if _log.isEnabledFor(logging.INFO):
            fields: dict[str, object] = {
                "method": st.method,
                "url": st.url,
                "target": st.target,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "outcome": outcome,
            }
            if st.connection is not None:
                fields["connection"] = st.connection
            if exemplar is not None:
                fields.update(exemplar)
            _log.info("http.request", extra=fields)

    def hand_off(self, st: _RequestState, resp: aiohttp.ClientResponse) -> None:
        """Give the pool gauge's count of this request's connection to its response."""
        held, st.held = st.held, 0
        if held <= 0:
            return
        if held > 1:  # an earlier connection failed and aiohttp retried on a new one
            self.metrics.connection_released(held - 1)
        conn = resp.connection
        if conn is None:
            self.metrics.connection_released()
        else:
            conn.add_callback(self.metrics.connection_released)

    async def on_request_start(
        self,
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        st = cast(_RequestState, ctx)
        st.connection = CONNECTION.get()
        st.held = 0
        note = st.trace_request_ctx
        if isinstance(note, RequestNote):
            self.begin(st, params.method, params.url, note.resend, note)
        else:
            self.begin(st, params.method, params.url, 0, None)

    async def on_connection_acquired(
        self,
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceConnectionCreateEndParams | aiohttp.TraceConnectionReuseconnParams,
    ) -> None:
        cast(_RequestState, ctx).held += 1
        self.metrics.connection_acquired()

    async def on_request_redirect(
        self,
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestRedirectParams,
    ) -> None:
        st = cast(_RequestState, ctx)
        resp = params.response
        location = resp.headers.get("Location") or resp.headers.get("URI")
        if location is None:
            return  # aiohttp returns this response as the final one: on_request_end
        self.hand_off(st, resp)
        self.finish(st, resp.status, None)
        method = params.method.upper()
        if (resp.status == 303 and method != "HEAD") or (
            resp.status in (301, 302) and method == "POST"
        ):
            method = "GET"
        try:
            target = params.url.join(URL(location))
        except ValueError:
            target = params.url  # aiohttp raises InvalidUrlRedirectClientError next
        self.begin(st, method, target, st.resend + 1, None)

    async def on_request_end(
        self,
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        st = cast(_RequestState, ctx)
        self.hand_off(st, params.response)
        self.finish(st, params.response.status, None)

    async def on_request_exception(
        self,
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        st = cast(_RequestState, ctx)
        if st.held:
            self.metrics.connection_released(st.held)
            st.held = 0
        exc = params.exception
        kind = transport_failure(exc)
        if kind is None:
            kind = "cancelled" if isinstance(exc, asyncio.CancelledError) else type(exc).__name__
        self.finish(st, None, kind)


def trace_config(tracer: trace.Tracer, metrics: Metrics) -> aiohttp.TraceConfig:
    """The hooks that trace, log and count every request of a session."""
    hooks = _Hooks(tracer, metrics)
    config = aiohttp.TraceConfig(trace_config_ctx_factory=_RequestState)
    config.on_request_start.append(hooks.on_request_start)
    config.on_connection_create_end.append(hooks.on_connection_acquired)
    config.on_connection_reuseconn.append(hooks.on_connection_acquired)
    config.on_request_redirect.append(hooks.on_request_redirect)
    config.on_request_end.append(hooks.on_request_end)
    config.on_request_exception.append(hooks.on_request_exception)
    config.freeze()
    return config
