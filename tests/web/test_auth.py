"""Access control over HTTP: bearer tokens, roles, the session cookie, open routes."""

from __future__ import annotations

import hashlib

import pytest

from monitor.clock import ManualClock
from monitor.secret import Secret
from monitor.web.auth import SESSION_COOKIE, Gate, Role, session_digest
from tests.web.conftest import ADMIN, READ, Client, bearer, make_app, serve, settings
from tests.web.fakes import FakeFleet

READ_ROUTES = ["/api/v1/connections", "/api/v1/connections/acme-prod", "/api/v1/summary", "/"]
ADMIN_POSTS = ["/api/v1/connections/globex-prod/probe", "/api/v1/connections/globex-prod/refresh"]


@pytest.mark.parametrize("path", READ_ROUTES)
async def test_reading_needs_a_token(client: Client, path: str) -> None:
    response = await client.get(path, headers={"Accept": "application/json"})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="snowmon"'
    assert (await response.json())["error"] == "unauthorized"
    assert (await client.get(path, headers=bearer(READ))).status == 200
    assert (await client.get(path, headers=bearer(ADMIN))).status == 200


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {READ}x",
        f"Bearer {READ[:-1]}",
        "Bearer ",
        f"Basic {READ}",
        READ,
        "Bearer " + session_digest(READ),  # the cookie value is no bearer token
    ],
)
async def test_wrong_credentials_are_401(client: Client, header: str) -> None:
    response = await client.get("/api/v1/summary", headers={"Authorization": header})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="snowmon"')


@pytest.mark.parametrize("path", ADMIN_POSTS)
async def test_actions_need_an_admin_token(client: Client, fleet: FakeFleet, path: str) -> None:
    assert (await client.post(path)).status == 401
    response = await client.post(path, headers=bearer(READ))
    assert response.status == 403
    assert (await response.json())["error"] == "forbidden"
    assert fleet.probes == fleet.refreshes == []
    assert (await client.post(path, headers=bearer(ADMIN))).status == 200


async def test_a_token_in_the_query_signs_a_browser_in_with_a_hashed_cookie(
    client: Client,
) -> None:
    response = await client.get(f"/?token={READ}&label=env:prod", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/?label=env:prod"  # the token leaves the URL
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie.value == session_digest(READ)
    assert READ not in cookie.value
    assert cookie.value != hashlib.sha256(READ.encode()).hexdigest()  # salted
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert not cookie["secure"]  # public_url is http here
    assert cookie["path"] == "/"
    # The cookie now opens the page and the read API, without the token.
    assert (await client.get("/")).status == 200
    assert (await client.get("/api/v1/connections")).status == 200
    # ... but never an action: those need the header, so a browser cannot be tricked.
    assert (await client.post("/api/v1/connections/globex-prod/probe")).status == 401


async def test_the_cookie_is_secure_when_the_public_url_is_https(
    fleet: FakeFleet, clock: ManualClock
) -> None:
    app = make_app(fleet, clock, web_settings=settings(public_url="https://snowmon.example.net"))
    client = await serve(app)
    try:
        response = await client.get(f"/?token={READ}", allow_redirects=False)
        assert response.status == 303
        assert response.cookies[SESSION_COOKIE]["secure"] is True
    finally:
        await client.close()


async def test_an_admin_cookie_still_cannot_post(client: Client, fleet: FakeFleet) -> None:
    assert (await client.get(f"/?token={ADMIN}")).status == 200
    assert (await client.post("/api/v1/connections/globex-prod/probe")).status == 401
    assert fleet.probes == []


async def test_a_read_cookie_cannot_start_the_connect_flow(client: Client) -> None:
    assert (await client.get(f"/?token={READ}")).status == 200
    response = await client.get("/connect/acme-prod", allow_redirects=False)
    assert response.status == 403
    assert "admin token" in await response.text()


async def test_a_stale_or_forged_cookie_is_no_session(client: Client) -> None:
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: "0" * 64})
    assert (await client.get("/api/v1/summary")).status == 401
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: "zz"})
    assert (await client.get("/api/v1/summary")).status == 401


async def test_a_query_token_is_not_accepted_by_the_api(client: Client) -> None:
    response = await client.get(f"/api/v1/summary?token={READ}")
    assert response.status == 401
    assert SESSION_COOKIE not in response.cookies


async def test_a_bad_query_token_is_401_and_sets_nothing(client: Client) -> None:
    response = await client.get("/?token=guess", headers={"Accept": "text/html"})
    assert response.status == 401
    assert SESSION_COOKIE not in response.cookies
    page = await response.text()
    assert 'name="token"' in page  # the sign-in form
    assert "That token is not valid. The status page needs a read or admin token." in page
    assert "guess" not in page


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"])
async def test_open_routes(client: Client, path: str) -> None:
    assert (await client.get(path)).status == 200


async def test_metrics_can_be_protected(fleet: FakeFleet, clock: ManualClock) -> None:
    client = await serve(make_app(fleet, clock, web_settings=settings(protect_metrics=True)))
    try:
        assert (await client.get("/metrics")).status == 401
        response = await client.get("/metrics", headers=bearer(READ))
        assert response.status == 200
        assert await response.read() == b"snowmon_up 1\n"
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()


async def test_without_tokens_reading_is_open_and_actions_are_refused(
    fleet: FakeFleet, clock: ManualClock
) -> None:
    app = make_app(fleet, clock, web_settings=settings(read_tokens=[], admin_tokens=[]))
    client = await serve(app)
    try:
        assert (await client.get("/api/v1/summary")).status == 200
        assert (await client.post("/api/v1/connections/globex-prod/probe")).status == 403
        assert (await client.get("/connect/acme-prod", allow_redirects=False)).status == 403
        assert fleet.probes == []
    finally:
        await client.close()


async def test_with_only_admin_tokens_reading_needs_one(
    fleet: FakeFleet, clock: ManualClock
) -> None:
    app = make_app(fleet, clock, web_settings=settings(read_tokens=[]))
    client = await serve(app)
    try:
        assert (await client.get("/api/v1/summary")).status == 401
        assert (await client.get("/api/v1/summary", headers=bearer(ADMIN))).status == 200
    finally:
        await client.close()


def test_gate_roles_and_empty_tokens() -> None:
    gate = Gate([Secret("r"), Secret("")], [Secret("a"), Secret("r")])
    assert gate.role_of_token("r") is Role.ADMIN  # listed in both: the higher wins
    assert gate.role_of_token("a") is Role.ADMIN
    assert gate.role_of_token("") is Role.NONE  # an empty configured token opens nothing
    assert gate.role_of_token("x") is Role.NONE
    assert gate.role_of_cookie(session_digest("a")) is Role.ADMIN
    assert gate.role_of_cookie(("not hex" * 10)[:64]) is Role.NONE
    assert gate.role_of_cookie(session_digest("a")[:-2] + "  ") is Role.NONE
    assert gate.role_of_cookie("g" * 64) is Role.NONE
    assert not gate.anonymous_read
