"""Facts of the client_credentials grant: off by default, no refresh token, needs an app user."""

from __future__ import annotations

import json

import aiohttp

from monitor.emulator import Emulator, FleetOptions
from tests.emulator.calls import GENERIC_DENIED, PROBE, TOKEN_SHAPE, basic, get_table, post_token


def cc_form(client_id: str, secret: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


async def test_client_credentials_is_off_by_default(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    form = cc_form(instance.client_id, instance.client_secret)
    assert await post_token(session, instance, form) == (401, GENERIC_DENIED)


async def test_client_credentials_answer_has_no_refresh_token(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    emu.configure_client(instance.name, client_credentials=True)
    async with session.post(
        instance.base_url + "/oauth_token.do",
        data={"grant_type": "client_credentials"},
        headers=basic(instance.client_id, instance.client_secret),
    ) as response:
        assert response.status == 200
        body = json.loads(await response.text())
    assert list(body) == ["access_token", "scope", "token_type", "expires_in"]
    assert TOKEN_SHAPE.match(body["access_token"])
    assert (await get_table(session, instance, PROBE, body["access_token"]))[0] == 200
    assert emu.stats(instance.name).clients[instance.client_id].grants["client_credentials"] == 1


async def test_client_credentials_without_application_user_is_400_unauthorized_client(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    emu.configure_client(instance.name, client_credentials=True, app_user=False)
    async with session.post(
        instance.base_url + "/oauth_token.do",
        data=cc_form(instance.client_id, instance.client_secret),
    ) as response:
        assert response.status == 400
        text = await response.text()
    assert json.loads(text) == {
        "error": "unauthorized_client",
        "error_description": "Received client_credentials grant_type request however "
        f"integration user is not configured for OAuth:{instance.client_id}",
    }
    assert text.startswith('{"error":"unauthorized_client"')


async def test_client_credentials_with_bad_secret_is_the_generic_401(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    emu.configure_client(instance.name, client_credentials=True)
    form = cc_form(instance.client_id, "wrong")
    assert await post_token(session, instance, form) == (401, GENERIC_DENIED)


async def test_fleet_option_enables_client_credentials_for_an_even_share() -> None:
    async with Emulator(FleetOptions(instances=10, client_credentials=0.3)) as emulator:
        enabled = [i.index for i in emulator.instances if i.clients[0].client_credentials]
    assert enabled == [3, 6, 9]
