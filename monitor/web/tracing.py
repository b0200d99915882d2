"""Server spans: one OpenTelemetry SERVER span per incoming request.

Follows the stable HTTP semantic conventions: span name `{method} {http.route}`,
attributes `http.request.method`, `url.path`, `url.scheme`, `http.route`,
`http.response.status_code`, and `error.type` with status Error for 5xx only (a 4xx is the
client's problem, not the server's). The query string is never recorded: on the connect
flow it carries the state, the code and possibly a token. An incoming `traceparent`
continues the caller's trace.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from monitor.web.auth import route_of

_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}
)


def _finish(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))


def tracing_middleware(tracer_provider: TracerProvider) -> Middleware:
    tracer = tracer_provider.get_tracer("monitor.web")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        method = request.method if request.method in _KNOWN_METHODS else "_OTHER"
        route = route_of(request)
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.path": request.path,
            "url.scheme": request.scheme,
        }
        if method == "_OTHER":
            attributes["http.request.method_original"] = request.method
        if route is not None:
            attributes["http.route"] = route
        label = "HTTP" if method == "_OTHER" else method
        name = f"{label} {route}" if route is not None else label
        with tracer.start_as_current_span(
            name,
            context=propagate.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # a redirect raised by aiohttp itself
                _finish(span, exc.status)
                raise
            except BaseException as exc:  # cancellation: the client went away
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR))
                raise
            _finish(span, response.status)
            return response

    return middleware
