"""Facts of `POST /oauth_token.do` with the password grant, and its generic failures."""

from __future__ import annotations

import json

import aiohttp

from monitor.emulator import Emulator, FleetOptions
from tests.emulator.calls import (
    GENERIC_DENIED,
    TOKEN_SHAPE,
    basic,
    password_form,
    post_token,
)


async def test_success_body_has_servicenow_keys_in_order(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    async with session.post(
        instance.base_url + "/oauth_token.do", data=password_form(instance)
    ) as response:
        assert response.status == 200
        assert response.headers["X-Is-Logged-In"] == "false"
        text = await response.text()
    body = json.loads(text)
    assert list(body) == ["access_token", "refresh_token", "scope", "token_type", "expires_in"]
    assert body["scope"] == "useraccount"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1799
    assert text.startswith('{"access_token":"')  # compact, as on the wire


async def test_tokens_are_86_character_base64url(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    _, body = await post_token(session, emu.instances[0], password_form(emu.instances[0]))
    assert TOKEN_SHAPE.match(body["access_token"])
    assert TOKEN_SHAPE.match(body["refresh_token"])
    assert body["access_token"] != body["refresh_token"]


async def test_expires_in_is_access_lifespan_minus_one(session: aiohttp.ClientSession) -> None:
    async with Emulator(FleetOptions(instances=1, access_lifespan=28_800)) as emulator:
        instance = emulator.instances[0]
        _, body = await post_token(session, instance, password_form(instance))
    assert body["expires_in"] == 28_799


async def test_requested_scope_is_echoed(emu: Emulator, session: aiohttp.ClientSession) -> None:
    instance = emu.instances[0]
    _, body = await post_token(session, instance, password_form(instance, scope="useraccount"))
    assert body["scope"] == "useraccount"


async def test_client_credentials_may_come_as_http_basic(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    form = password_form(instance)
    del form["client_id"], form["client_secret"]
    status, body = await post_token(
        session, instance, form, basic(instance.client_id, instance.client_secret)
    )
    assert status == 200
    assert TOKEN_SHAPE.match(body["access_token"])


async def test_http_basic_with_a_wrong_secret_is_denied(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    form = password_form(instance)
    del form["client_secret"]
    status, body = await post_token(session, instance, form, basic(instance.client_id, "nope"))
    assert (status, body) == (401, GENERIC_DENIED)


async def test_every_failure_is_the_generic_401(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance, other = emu.instances[0], emu.instances[1]
    failures = [
        password_form(instance, password="wrong"),
        password_form(instance, username="admin"),
        password_form(instance, client_secret="wrong"),
        password_form(instance, client_id="0" * 32),
        password_form(instance, client_id=other.client_id, client_secret=other.client_secret),
        password_form(instance, grant_type="implicit"),
        {k: v for k, v in password_form(instance).items() if k != "grant_type"},
        {k: v for k, v in password_form(instance).items() if k != "password"},
    ]
    for form in failures:
        async with session.post(instance.base_url + "/oauth_token.do", data=form) as response:
            assert response.status == 401, form
            assert response.headers["X-Is-Logged-In"] == "false"
            assert await response.text() == (
                '{"error_description":"access_denied","error":"server_error"}'
            )


async def test_json_body_is_rejected_like_servicenow(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    async with session.post(
        instance.base_url + "/oauth_token.do", json=password_form(instance)
    ) as response:
        assert response.status == 401
        assert await response.json() == GENERIC_DENIED


async def test_parameters_in_the_query_string_are_ignored(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    async with session.post(
        instance.base_url + "/oauth_token.do", params=password_form(instance), data={"x": "1"}
    ) as response:
        assert response.status == 401


async def test_get_on_the_token_endpoint_is_denied(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    async with session.get(emu.instances[0].base_url + "/oauth_token.do") as response:
        assert response.status == 401
        assert await response.json() == GENERIC_DENIED


async def test_disabled_password_grant_is_denied(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    emu.configure_client(instance.name, password=False)
    status, body = await post_token(session, instance, password_form(instance))
    assert (status, body) == (401, GENERIC_DENIED)
    emu.configure_client(instance.name, password=True)
    status, _ = await post_token(session, instance, password_form(instance))
    assert status == 200


async def test_each_password_grant_issues_a_fresh_refresh_token(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    _, first = await post_token(session, instance, password_form(instance))
    _, second = await post_token(session, instance, password_form(instance))
    assert first["refresh_token"] != second["refresh_token"]
    stats = emu.stats(instance.name).clients[instance.client_id]
    assert stats.grants["password"] == 2


async def test_rejections_are_counted_per_client(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    await post_token(session, instance, password_form(instance, password="wrong"))
    stats = emu.stats(instance.name)
    assert stats.clients[instance.client_id].rejected == 1
    assert stats.token_requests[401] == 1
