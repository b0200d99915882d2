"""Facts of the refresh_token grant: same refresh token back, a fixed lifetime, revocation."""

from __future__ import annotations

import asyncio

import aiohttp

from monitor.emulator import Emulator, FleetOptions
from tests.emulator.calls import (
    GENERIC_DENIED,
    PROBE,
    TOKEN_SHAPE,
    basic,
    get_table,
    post_token,
    refresh_form,
    tokens,
)

HUNDRED_DAYS = 8_640_000


async def test_refresh_returns_a_new_access_token_and_the_same_refresh_token(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    granted = await tokens(session, instance)
    status, body = await post_token(
        session, instance, refresh_form(instance, granted["refresh_token"])
    )
    assert status == 200
    assert list(body) == ["access_token", "refresh_token", "scope", "token_type", "expires_in"]
    assert body["refresh_token"] == granted["refresh_token"]
    assert body["access_token"] != granted["access_token"]
    assert TOKEN_SHAPE.match(body["access_token"])
    assert body["expires_in"] == 1799


async def test_refresh_with_http_basic_client_authentication(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    granted = await tokens(session, instance)
    form = {"grant_type": "refresh_token", "refresh_token": granted["refresh_token"]}
    status, _ = await post_token(
        session, instance, form, basic(instance.client_id, instance.client_secret)
    )
    assert status == 200


async def test_refresh_never_extends_the_refresh_token_life(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    refresh = (await tokens(session, instance))["refresh_token"]
    for _ in range(4):  # used often, 25 days apart: still dies at issue + 100 days
        emu.clock.advance(HUNDRED_DAYS / 4 - 60)
        status, _ = await post_token(session, instance, refresh_form(instance, refresh))
        assert status == 200
    emu.clock.advance(240)
    status, body = await post_token(session, instance, refresh_form(instance, refresh))
    assert (status, body) == (401, GENERIC_DENIED)
    stats = emu.stats(instance.name).clients[instance.client_id]
    assert stats.refreshes == 4
    assert stats.rejected_refresh_tokens == 1


async def test_new_password_grant_after_expiry_gets_a_fresh_lifespan(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    old = (await tokens(session, instance))["refresh_token"]
    emu.clock.advance(HUNDRED_DAYS + 1)
    new = (await tokens(session, instance))["refresh_token"]
    emu.clock.advance(HUNDRED_DAYS - 100)
    assert (await post_token(session, instance, refresh_form(instance, new)))[0] == 200
    assert (await post_token(session, instance, refresh_form(instance, old)))[0] == 401


async def test_unknown_or_foreign_refresh_tokens_get_the_generic_401(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance, other = emu.instances[0], emu.instances[1]
    foreign = (await tokens(session, other))["refresh_token"]
    for token in ("x" * 86, foreign, ""):
        status, body = await post_token(session, instance, refresh_form(instance, token))
        assert (status, body) == (401, GENERIC_DENIED)


async def test_refresh_with_a_bad_client_secret_is_denied(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    refresh = (await tokens(session, instance))["refresh_token"]
    form = refresh_form(instance, refresh, client_secret="bad")
    assert await post_token(session, instance, form) == (401, GENERIC_DENIED)


async def test_revoking_a_client_kills_its_access_and_refresh_tokens(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    granted = await tokens(session, instance)
    emu.revoke(instance.name)
    status, _, _ = await get_table(session, instance, PROBE, granted["access_token"])
    assert status == 401
    form = refresh_form(instance, granted["refresh_token"])
    assert await post_token(session, instance, form) == (401, GENERIC_DENIED)
    assert (await tokens(session, instance))["access_token"]  # a new grant works again
    assert emu.stats(instance.name).rejected_access_tokens == 1


async def test_rotated_client_secret_rejects_the_old_one(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    refresh = (await tokens(session, instance))["refresh_token"]
    old_secret = instance.client_secret
    new_secret = emu.rotate_secret(instance.name)
    assert new_secret != old_secret
    assert instance.client_secret == new_secret
    stale = refresh_form(instance, refresh, client_secret=old_secret)
    assert await post_token(session, instance, stale) == (401, GENERIC_DENIED)
    assert (await post_token(session, instance, refresh_form(instance, refresh)))[0] == 200


async def test_disabled_refresh_grant_is_denied(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    refresh = (await tokens(session, instance))["refresh_token"]
    emu.configure_client(instance.name, refresh_token=False)
    assert await post_token(session, instance, refresh_form(instance, refresh)) == (
        401,
        GENERIC_DENIED,
    )


async def test_last_refresh_time_is_the_emulated_time(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    refresh = (await tokens(session, instance))["refresh_token"]
    emu.clock.advance(3600)
    before = emu.clock.now()
    await post_token(session, instance, refresh_form(instance, refresh))
    last = emu.stats(instance.name).clients[instance.client_id].last_refresh_at
    assert last is not None
    assert before <= last <= emu.clock.now()


async def test_overlapping_refreshes_of_one_token_are_counted(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    refresh = (await tokens(session, instance))["refresh_token"]
    emu.set_faults(instance.name, latency=0.2, latency_on=["token"])
    form = refresh_form(instance, refresh)
    results = await asyncio.gather(*(post_token(session, instance, form) for _ in range(3)))
    assert [status for status, _ in results] == [200, 200, 200]
    stats = emu.stats(instance.name).clients[instance.client_id]
    assert stats.refresh_overlaps == 3  # pairs: (1,2), (1,3), (2,3)
    await post_token(session, instance, form)  # alone: no overlap
    assert stats.refresh_overlaps == 3
    assert stats.refreshes == 4


async def test_strict_rotation_issues_a_new_refresh_token_each_time(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(FleetOptions(instances=1, strict_rotation=True)) as emulator:
        instance = emulator.instances[0]
        first = (await tokens(session, instance))["refresh_token"]
        _, body = await post_token(session, instance, refresh_form(instance, first))
        second = body["refresh_token"]
        assert second != first
        assert TOKEN_SHAPE.match(second)
        _, body = await post_token(session, instance, refresh_form(instance, second))
        assert body["refresh_token"] not in {first, second}


async def test_strict_rotation_reuse_revokes_the_whole_family(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(FleetOptions(instances=1, strict_rotation=True)) as emulator:
        instance = emulator.instances[0]
        first = (await tokens(session, instance))["refresh_token"]
        _, body = await post_token(session, instance, refresh_form(instance, first))
        second, access = body["refresh_token"], body["access_token"]
        assert (await get_table(session, instance, PROBE, access))[0] == 200
        reuse = await post_token(session, instance, refresh_form(instance, first))
        assert reuse == (401, GENERIC_DENIED)
        assert (await post_token(session, instance, refresh_form(instance, second)))[0] == 401
        assert (await get_table(session, instance, PROBE, access))[0] == 401
        stats = emulator.stats(instance.name).clients[instance.client_id]
        assert stats.reused_refresh_tokens == 1
        assert (await tokens(session, instance))["refresh_token"]  # a new grant starts afresh


async def test_strict_rotation_punishes_concurrent_refreshes(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(FleetOptions(instances=1, strict_rotation=True)) as emulator:
        instance = emulator.instances[0]
        refresh = (await tokens(session, instance))["refresh_token"]
        emulator.set_faults(instance.name, latency=0.1, latency_on=["token"])
        form = refresh_form(instance, refresh)
        results = await asyncio.gather(
            post_token(session, instance, form), post_token(session, instance, form)
        )
        assert sorted(status for status, _ in results) == [200, 401]
        winner = next(body for status, body in results if status == 200)
        assert (
            await post_token(session, instance, refresh_form(instance, winner["refresh_token"]))
        )[0] == 401
        stats = emulator.stats(instance.name).clients[instance.client_id]
        assert stats.refresh_overlaps == 1
        assert stats.reused_refresh_tokens == 1
