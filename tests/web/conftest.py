"""Fixtures: the web app over real HTTP on 127.0.0.1, fed by an in-memory fleet."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.trace import TracerProvider

from monitor.clock import ManualClock
from monitor.model import Grant, State
from monitor.secret import Secret
from monitor.web import WebSettings, build_app
from tests.web.fakes import (
    DAY,
    REFRESH_TOKEN,
    T0,
    FakeFleet,
    FakeReadiness,
    history_of,
    make_status,
    render_metrics,
)

READ = "read-token-0123456789abcdef"
ADMIN = "admin-token-fedcba9876543210"
PUBLIC_URL = "http://snowmon.example.net:8080"

Client = TestClient[web.Request, web.Application]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def settings(**overrides: object) -> WebSettings:
    values: dict[str, object] = {
        "read_tokens": [Secret(READ)],
        "admin_tokens": [Secret(ADMIN)],
        "protect_metrics": False,
        "public_url": PUBLIC_URL,
    }
    values.update(overrides)
    return WebSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def fleet(clock: ManualClock) -> FakeFleet:
    fleet = FakeFleet.of(
        clock,
        [
            make_status(
                "acme-prod",
                state=State.CREDENTIALS_EXPIRED,
                grant=Grant.AUTHORIZATION_CODE,
                labels={"customer": "acme", "env": "prod"},
                refresh_left=-3600.0,
                since_ago=2 * 3600 + 5 * 60,
                last_error=f"refresh rejected: {REFRESH_TOKEN}",
            ),
            make_status(
                "acme-test",
                grant=Grant.AUTHORIZATION_CODE,
                labels={"customer": "acme", "env": "test"},
                refresh_left=2 * DAY,
            ),
            make_status(
                "globex-prod",
                state=State.FAILING,
                labels={"customer": "globex", "env": "prod"},
                last_reason="timeout",
            ),
            make_status("initech-prod", labels={"customer": "initech", "env": "prod"}),
            make_status(
                "umbrella-dev",
                state=State.PENDING,
                grant=Grant.CLIENT_CREDENTIALS,
                refresh_left=None,
            ),
        ],
    )
    fleet.histories["acme-prod"] = history_of("acme-prod")
    return fleet


@pytest.fixture
def readiness() -> FakeReadiness:
    return FakeReadiness()


def make_app(
    fleet: FakeFleet,
    clock: ManualClock,
    *,
    web_settings: WebSettings | None = None,
    readiness: FakeReadiness | None = None,
    tracer_provider: TracerProvider | None = None,
) -> web.Application:
    return build_app(
        fleet=fleet,
        readiness=readiness or FakeReadiness(),
        metrics_render=render_metrics,
        settings=web_settings or settings(),
        clock=clock,
        tracer_provider=tracer_provider,
    )


async def serve(app: web.Application) -> Client:
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def client(
    fleet: FakeFleet, clock: ManualClock, readiness: FakeReadiness
) -> AsyncIterator[Client]:
    client = await serve(make_app(fleet, clock, readiness=readiness))
    try:
        yield client
    finally:
        await client.close()
