"""The token requests `monitor.oauth` sends, as the emulator's token endpoint receives
them: one `application/x-www-form-urlencoded` body, encoded by us (no aiohttp FormData),
fields in a fixed order, special characters quoted so the server reads back the exact
values. Real HTTP over loopback; the emulator's handler is only wrapped to keep a copy of
each request."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web

from monitor import oauth
from monitor.clock import SystemClock
from monitor.emulator import Emulator, FleetOptions
from monitor.emulator.fleet import Instance
from monitor.emulator.token_endpoint import Pause, TokenEndpoint, parse_form
from monitor.emulator.wire import Reply
from monitor.model import TokenResult
from monitor.secret import Secret

FORM = "application/x-www-form-urlencoded"
# Every character urlencode must quote: a space, the form's own separators, a plus, a
# percent sign, non-ASCII.
AWKWARD_PASSWORD = "p&ss=wörd +%2B;#?"


@dataclass(frozen=True)
class Received:
    content_type: str | None
    content_length: str | None
    authorization: str | None
    body: bytes


class RecordingTokenEndpoint(TokenEndpoint):
    """The emulator's token endpoint, keeping what each request looked like on arrival."""

    def __init__(self, endpoint: TokenEndpoint) -> None:
        super().__init__(endpoint.state)
        self.received: list[Received] = []

    async def handle(self, instance: Instance, request: web.BaseRequest, pause: Pause) -> Reply:
        headers = request.headers
        self.received.append(
            Received(
                headers.get("Content-Type"),
                headers.get("Content-Length"),
                headers.get("Authorization"),
                await request.read(),  # aiohttp keeps the body: the handler reads it again
            )
        )
        return await super().handle(instance, request, pause)


@dataclass
class Setup:
    emu: Emulator
    inst: Instance
    recorder: RecordingTokenEndpoint
    session: aiohttp.ClientSession

    def endpoint(self, *, basic_auth: bool = False) -> oauth.TokenEndpoint:
        return oauth.TokenEndpoint(
            self.inst.base_url,
            self.inst.client_id,
            Secret(self.inst.client_secret),
            refresh_lifespan=8_640_000.0,
            basic_auth=basic_auth,
        )


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with Emulator(FleetOptions(instances=1, seed=41)) as emu:
        inst = emu.instances[0]
        inst.password = AWKWARD_PASSWORD
        emu.configure_client(inst.name, client_credentials=True, app_user=True)
        server = emu._server  # no public way to wrap the handler
        recorder = RecordingTokenEndpoint(server.tokens)
        server.tokens = recorder
        async with aiohttp.ClientSession() as session:
            yield Setup(emu, inst, recorder, session)


def deadline() -> float:
    return asyncio.get_running_loop().time() + 10.0


def assert_form(received: Received, pairs: list[tuple[str, str]]) -> None:
    assert received.content_type == FORM
    assert received.body == urlencode(pairs).encode()
    assert received.content_length == str(len(received.body))
    assert parse_form(received.body) == dict(pairs)
    assert b"--" not in received.body  # no multipart boundary anywhere


async def password(s: Setup, **endpoint: bool) -> TokenResult:
    return await oauth.password_grant(
        s.session,
        s.endpoint(**endpoint),
        SystemClock(),
        username=s.inst.username,
        password=Secret(AWKWARD_PASSWORD),
        scopes=["useraccount", "admin"],
        deadline=deadline(),
    )


async def test_password_grant_sends_one_urlencoded_form(setup: Setup) -> None:
    result = await password(setup)
    assert result.ok, result
    [received] = setup.recorder.received
    assert_form(
        received,
        [
            ("grant_type", "password"),
            ("username", setup.inst.username),
            ("password", AWKWARD_PASSWORD),
            ("scope", "useraccount admin"),
            ("client_id", setup.inst.client_id),
            ("client_secret", setup.inst.client_secret),
        ],
    )
    assert b"p%26ss%3Dw%C3%B6rd+%2B%252B%3B%23%3F" in received.body
    assert received.authorization is None


async def test_basic_auth_keeps_the_client_out_of_the_form(setup: Setup) -> None:
    result = await password(setup, basic_auth=True)
    assert result.ok, result
    [received] = setup.recorder.received
    assert_form(
        received,
        [
            ("grant_type", "password"),
            ("username", setup.inst.username),
            ("password", AWKWARD_PASSWORD),
            ("scope", "useraccount admin"),
        ],
    )
    credentials = f"{setup.inst.client_id}:{setup.inst.client_secret}".encode()
    assert received.authorization == "Basic " + base64.b64encode(credentials).decode()


async def test_refresh_and_client_credentials_grants(setup: Setup) -> None:
    first = await password(setup)
    assert first.tokens is not None
    assert first.tokens.refresh_token is not None
    refreshed = await oauth.refresh_grant(
        setup.session,
        setup.endpoint(),
        SystemClock(),
        previous=first.tokens,
        deadline=deadline(),
    )
    assert refreshed.ok, refreshed
    app = await oauth.client_credentials_grant(
        setup.session, setup.endpoint(), SystemClock(), scopes=[], deadline=deadline()
    )
    assert app.ok, app
    _, refresh, credentials = setup.recorder.received
    client = [("client_id", setup.inst.client_id), ("client_secret", setup.inst.client_secret)]
    assert_form(
        refresh,
        [
            ("grant_type", "refresh_token"),
            ("refresh_token", first.tokens.refresh_token.reveal()),
            *client,
        ],
    )
    assert_form(credentials, [("grant_type", "client_credentials"), *client])


async def test_authorization_code_grant(setup: Setup) -> None:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    redirect_uri = "http://127.0.0.1:9/oauth/callback?from=test&x=1"
    params = {
        "response_type": "code",
        "client_id": setup.inst.client_id,
        "redirect_uri": redirect_uri,
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    async with setup.session.get(
        setup.inst.base_url + "/oauth_auth.do", params=params, allow_redirects=False
    ) as resp:
        assert resp.status == 302, resp.status
        code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    result = await oauth.authorization_code_grant(
        setup.session,
        setup.endpoint(),
        SystemClock(),
        code=Secret(code),
        redirect_uri=redirect_uri,
        code_verifier=Secret(verifier),
        deadline=deadline(),
    )
    assert result.ok, result
    [received] = setup.recorder.received
    assert_form(
        received,
        [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
            ("client_id", setup.inst.client_id),
            ("client_secret", setup.inst.client_secret),
        ],
    )


async def test_a_rejected_request_names_no_secret(setup: Setup) -> None:
    setup.inst.password = "another password"
    result = await password(setup)
    assert not result.ok
    assert result.failure is not None
    text = f"{result!r} {result.detail}"
    for secret in (AWKWARD_PASSWORD, setup.inst.client_secret, "p%26ss"):
        assert secret not in text
