"""The web application: routes, who may use them, and the middlewares around them.

`build_app` is the one entry point. The daemon embeds the result with `AppRunner` and
`TCPSite`. Middlewares, outermost first: a SERVER span per request (when given a tracer
provider), errors into JSON or plain-words pages, then access control.

Routes and what they need (read = a read or admin token, admin = an admin token):

| route | needs |
| --- | --- |
| `GET /healthz`, `GET /readyz`, `GET /api/v1/openapi.json`, `GET /oauth/callback` | nothing |
| `GET /metrics` | read when `protect_metrics`, else nothing |
| `GET /`, `GET /api/v1/connections[/{id}]`, `GET /api/v1/summary` | read |
| `POST /api/v1/connections/{id}/probe` and `/refresh`, `GET /connect/{id}` | admin |
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from aiohttp import web
from opentelemetry.trace import TracerProvider

from monitor.clock import Clock
from monitor.web import api, connect, page
from monitor.web.auth import Gate, Role, auth_middleware, route_of
from monitor.web.html import SIGN_IN_ROUTES, html_error
from monitor.web.keys import (
    CLOCK,
    FLEET,
    GATE,
    METRICS_RENDER,
    PENDING,
    READINESS,
    SETTINGS,
    MetricsRender,
)
from monitor.web.openapi import build_openapi
from monitor.web.pending import PendingAuthorizations
from monitor.web.ports import FleetView, Readiness
from monitor.web.problems import error_middleware
from monitor.web.settings import WebSettings
from monitor.web.tracing import tracing_middleware

log = logging.getLogger("monitor.web")

READINESS_TIMEOUT: Final = 5.0
MAX_REQUEST_BODY: Final = 64 * 1024  # nothing here takes a body

OPENAPI: Final = web.AppKey("snowmon.openapi", dict)

_ACCESS: Final[dict[tuple[str, str], Role]] = {
    ("GET", "/"): Role.READ,
    ("GET", "/api/v1/connections"): Role.READ,
    ("GET", "/api/v1/connections/{id}"): Role.READ,
    ("GET", "/api/v1/summary"): Role.READ,
    ("POST", "/api/v1/connections/{id}/probe"): Role.ADMIN,
    ("POST", "/api/v1/connections/{id}/refresh"): Role.ADMIN,
    ("GET", "/connect/{id}"): Role.ADMIN,
}


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, bool]
    try:
        async with asyncio.timeout(READINESS_TIMEOUT):
            checks = dict(await request.app[READINESS].check())
    except TimeoutError:
        checks = {"readiness_check": False}
    except Exception:  # a readiness probe answers; it never fails with a 500
        log.exception("web.readiness_failed")
        checks = {"readiness_check": False}
    ready = bool(checks) and all(checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
        headers={"Cache-Control": "no-store"},
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    # Rendering a large fleet's per-connection series takes seconds: keep it off the loop.
    render = request.app[METRICS_RENDER]
    chunks, content_type = await asyncio.to_thread(render, request.headers.get("Accept", ""))
    # Chunk by chunk, with its length known: never one copy of the whole exposition. A
    # HEAD renders it too, for its length.
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.content_length = sum(len(chunk) for chunk in chunks)
    try:
        await response.prepare(request)
        if request.method != "HEAD":  # aiohttp would send a HEAD's body written here
            for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
    except ConnectionError:  # reset, or aiohttp's "Connection lost" while draining
        # The scraper gave up (its scrape timeout) while a large fleet's exposition was
        # on the way: nothing to answer, and nothing wrong with the daemon.
        log.info("web.metrics_client_gone", extra={"content_length": response.content_length})
    return response


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


def _requirement(protect_metrics: bool) -> Callable[[web.Request], Role]:
    def requirement(request: web.Request) -> Role:
        route = route_of(request)
        if route is None:
            return Role.NONE  # no route: the router's 404/405 answers
        if route == "/metrics":
            return Role.READ if protect_metrics else Role.NONE
        method = "GET" if request.method == "HEAD" else request.method
        return _ACCESS.get((method, route), Role.NONE)

    return requirement


def build_app(
    *,
    fleet: FleetView,
    readiness: Readiness,
    metrics_render: MetricsRender,
    settings: WebSettings,
    clock: Clock,
    tracer_provider: TracerProvider | None,
) -> web.Application:
    """The whole web app. `metrics_render(accept_header) -> (chunks, content_type)`."""
    gate = Gate(settings.read_tokens, settings.admin_tokens)
    if gate.anonymous_read:
        log.warning("web.no_tokens", extra={"detail": "reading is open; admin actions refused"})
    middlewares = [
        error_middleware(html_error),
        auth_middleware(
            gate,
            _requirement(settings.protect_metrics),
            token_query_routes=SIGN_IN_ROUTES,
            secure_cookies=settings.secure_cookies,
        ),
    ]
    if tracer_provider is not None:
        middlewares.insert(0, tracing_middleware(tracer_provider))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_REQUEST_BODY)
    app[FLEET] = fleet
    app[READINESS] = readiness
    app[METRICS_RENDER] = metrics_render
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[GATE] = gate
    app[PENDING] = PendingAuthorizations(clock)
    app[OPENAPI] = build_openapi(
        protect_metrics=settings.protect_metrics, anonymous_read=gate.anonymous_read
    )
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/openapi.json", openapi)
    api.add_routes(app)
    page.add_routes(app)
    connect.add_routes(app)
    return app
