"""Facts of `GET /oauth_auth.do` and the authorization_code grant, with and without PKCE."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import aiohttp

from monitor.emulator import Emulator, FleetOptions, Instance
from tests.emulator.calls import GENERIC_DENIED, TOKEN_SHAPE, post_token

REDIRECT = "http://127.0.0.1:9/oauth/callback"
VERIFIER = "a" * 43 + "-._~" + "b" * 20


def challenge(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


def authorize_params(instance: Instance, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": instance.client_id,
        "redirect_uri": REDIRECT,
        "state": "st4te",
    }
    params.update(extra)
    return params


async def authorize(
    session: aiohttp.ClientSession, instance: Instance, **extra: str
) -> dict[str, list[str]]:
    async with session.get(
        instance.base_url + "/oauth_auth.do",
        params=authorize_params(instance, **extra),
        allow_redirects=False,
    ) as response:
        assert response.status == 302, await response.text()
        location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


def code_form(instance: Instance, code: str, **extra: str) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": instance.client_id,
    }
    form.update(extra)
    return form


async def test_auto_approve_redirects_with_an_86_char_code_and_the_state(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    query = await authorize(session, emu.instances[0])
    assert query["state"] == ["st4te"]
    assert TOKEN_SHAPE.match(query["code"][0])


async def test_code_with_pkce_s256_exchanges_without_a_secret(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    code = (
        await authorize(
            session, instance, code_challenge=challenge(VERIFIER), code_challenge_method="S256"
        )
    )["code"][0]
    status, body = await post_token(
        session, instance, code_form(instance, code, code_verifier=VERIFIER)
    )
    assert status == 200
    assert list(body) == ["access_token", "refresh_token", "scope", "token_type", "expires_in"]
    assert emu.stats(instance.name).clients[instance.client_id].grants["authorization_code"] == 1


async def test_pkce_with_a_wrong_verifier_is_denied(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    code = (
        await authorize(
            session, instance, code_challenge=challenge(VERIFIER), code_challenge_method="S256"
        )
    )["code"][0]
    form = code_form(instance, code, code_verifier="x" * 50)
    assert await post_token(session, instance, form) == (401, GENERIC_DENIED)
    form = code_form(instance, code, client_secret=instance.client_secret)  # secret is no verifier
    assert await post_token(session, instance, form) == (401, GENERIC_DENIED)


async def test_pkce_plain_method(emu: Emulator, session: aiohttp.ClientSession) -> None:
    instance = emu.instances[0]
    code = (
        await authorize(session, instance, code_challenge=VERIFIER, code_challenge_method="plain")
    )["code"][0]
    status, _ = await post_token(
        session, instance, code_form(instance, code, code_verifier=VERIFIER)
    )
    assert status == 200


async def test_code_without_pkce_needs_the_client_secret(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    code = (await authorize(session, instance))["code"][0]
    assert await post_token(session, instance, code_form(instance, code)) == (401, GENERIC_DENIED)
    form = code_form(instance, code, client_secret=instance.client_secret)
    assert (await post_token(session, instance, form))[0] == 200


async def test_a_code_is_single_use(emu: Emulator, session: aiohttp.ClientSession) -> None:
    instance = emu.instances[0]
    code = (await authorize(session, instance))["code"][0]
    form = code_form(instance, code, client_secret=instance.client_secret)
    assert (await post_token(session, instance, form))[0] == 200
    assert await post_token(session, instance, form) == (401, GENERIC_DENIED)


async def test_redirect_uri_must_match_the_authorize_request(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    code = (await authorize(session, instance))["code"][0]
    form = code_form(
        instance, code, client_secret=instance.client_secret, redirect_uri=REDIRECT + "x"
    )
    assert await post_token(session, instance, form) == (401, GENERIC_DENIED)


async def test_codes_expire(emu: Emulator, session: aiohttp.ClientSession) -> None:
    instance = emu.instances[0]
    code = (await authorize(session, instance))["code"][0]
    emu.clock.advance(61)
    form = code_form(instance, code, client_secret=instance.client_secret)
    assert await post_token(session, instance, form) == (401, GENERIC_DENIED)


async def test_missing_state_is_refused(emu: Emulator, session: aiohttp.ClientSession) -> None:
    instance = emu.instances[0]
    params = authorize_params(instance)
    del params["state"]
    async with session.get(
        instance.base_url + "/oauth_auth.do", params=params, allow_redirects=False
    ) as response:
        assert response.status == 400
        assert "Missing State parameter in request" in await response.text()


async def test_unknown_client_is_refused(emu: Emulator, session: aiohttp.ClientSession) -> None:
    instance = emu.instances[0]
    async with session.get(
        instance.base_url + "/oauth_auth.do",
        params=authorize_params(instance, client_id="f" * 32),
        allow_redirects=False,
    ) as response:
        assert response.status == 400
        assert response.headers["Content-Type"].startswith("text/html")


async def test_without_auto_approve_the_user_logs_in_and_allows(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(FleetOptions(instances=1, auto_approve=False)) as emulator:
        instance = emulator.instances[0]
        url = instance.base_url + "/oauth_auth.do"
        async with session.get(url, params=authorize_params(instance)) as response:
            assert response.status == 200
            page = await response.text()
        assert '<form method="post" action="/oauth_auth.do">' in page
        form = {**authorize_params(instance), "user_name": instance.username, "action": "allow"}
        async with session.post(
            url, data={**form, "user_password": "wrong"}, allow_redirects=False
        ) as response:
            assert response.status == 200
            assert "User name or password invalid" in await response.text()
        async with session.post(
            url, data={**form, "user_password": instance.password}, allow_redirects=False
        ) as response:
            assert response.status == 302
            query = parse_qs(urlsplit(response.headers["Location"]).query)
        assert TOKEN_SHAPE.match(query["code"][0])
        async with session.post(
            url, data={**form, "action": "deny"}, allow_redirects=False
        ) as response:
            query = parse_qs(urlsplit(response.headers["Location"]).query)
        assert query == {"error": ["access_denied"], "state": ["st4te"]}
