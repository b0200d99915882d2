"""The admin API: the same controls and evidence as the Python object, as JSON over HTTP."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp

from monitor.emulator import Emulator
from tests.emulator.calls import PROBE, get_table, password_form, post_token, refresh_form, tokens


async def call(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with session.request(method, url, json=body) as response:
        return response.status, await response.json()


async def test_admin_api_binds_127_0_0_1_only(emu: Emulator) -> None:
    assert urlsplit(emu.admin_url).hostname == "127.0.0.1"


async def test_fleet_lists_instances_with_credentials(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, body = await call(session, "GET", f"{emu.admin_url}/admin/fleet?offset=1&limit=1")
    assert status == 200
    assert body["total"] == 3
    [listed] = body["instances"]
    instance = emu.instances[1]
    assert (listed["name"], listed["base_url"]) == (instance.name, instance.base_url)
    assert (listed["client_id"], listed["client_secret"]) == (
        instance.client_id,
        instance.client_secret,
    )
    assert listed["password"] == instance.password


async def test_clock_advance_and_set(emu: Emulator, session: aiohttp.ClientSession) -> None:
    before = emu.clock.now()
    status, body = await call(session, "POST", f"{emu.admin_url}/admin/clock", {"advance": 86_400})
    assert status == 200
    assert body["now"] - before >= 86_400
    _, body = await call(session, "POST", f"{emu.admin_url}/admin/clock", {"set": 2_000_000_000})
    assert abs(body["now"] - 2_000_000_000) < 1
    _, body = await call(session, "GET", f"{emu.admin_url}/admin/clock")
    assert set(body) == {"now", "speed", "anchor", "offset"}


async def test_faults_patch_put_and_delete_take_effect(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    access = (await tokens(session, instance))["access_token"]
    url = f"{emu.admin_url}/admin/instances/{instance.name}/faults"
    status, body = await call(session, "PATCH", url, {"maintenance": True})
    assert (status, body["maintenance"]) == (200, True)
    async with session.get(instance.base_url + PROBE) as response:
        assert response.status == 503
    _, body = await call(session, "PUT", url, {"acl_deny": ["sys_user"]})
    assert (body["maintenance"], body["acl_deny"]) == (False, ["sys_user"])
    assert (await get_table(session, instance, PROBE, access))[0] == 403
    _, body = await call(session, "DELETE", url)
    assert body["acl_deny"] == []
    assert (await get_table(session, instance, PROBE, access))[0] == 200
    assert emu.instance(instance.name).faults is None


async def test_bulk_faults_over_a_share_and_clear_all(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, body = await call(
        session,
        "POST",
        f"{emu.admin_url}/admin/faults",
        {"share": 0.34, "faults": {"hibernate": True}},
    )
    assert status == 200
    assert len(body["instances"]) == 1
    assert emu.faults(body["instances"][0]).hibernate
    await call(session, "DELETE", f"{emu.admin_url}/admin/faults")
    assert all(instance.faults is None for instance in emu.instances)


async def test_client_revoke_rotate_and_grants(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    refresh = (await tokens(session, instance))["refresh_token"]
    base = f"{emu.admin_url}/admin/instances/{instance.name}/clients/{instance.client_id}"
    assert (await call(session, "POST", base + "/revoke"))[0] == 200
    assert (await post_token(session, instance, refresh_form(instance, refresh)))[0] == 401
    status, body = await call(session, "POST", base + "/rotate-secret")
    assert status == 200
    assert body["client_secret"] == instance.client_secret
    status, body = await call(
        session, "PATCH", base, {"password": False, "client_credentials": True}
    )
    assert body["grants"]["password"] is False
    assert body["grants"]["client_credentials"] is True
    assert (await post_token(session, instance, password_form(instance)))[0] == 401


async def test_stats_per_instance_and_fleet(emu: Emulator, session: aiohttp.ClientSession) -> None:
    instance = emu.instances[0]
    granted = await tokens(session, instance)
    await post_token(session, instance, refresh_form(instance, granted["refresh_token"]))
    await get_table(session, instance, PROBE, granted["access_token"])
    _, body = await call(session, "GET", f"{emu.admin_url}/admin/instances/{instance.name}/stats")
    client = body["clients"][instance.client_id]
    assert client["grants"] == {"password": 1, "refresh_token": 1}
    assert client["refreshes"] == 1
    assert client["last_refresh_at"] is not None
    assert body["table_requests"] == {"200": 1}
    assert body["token_requests"] == {"200": 2}
    _, fleet = await call(session, "GET", f"{emu.admin_url}/admin/stats")
    assert list(fleet["instances"]) == [instance.name]
    assert fleet["totals"]["refreshes"] == 1
    assert fleet["totals"]["table_requests"] == {"200": 1}
    assert fleet["tokens"]["refresh"] == 1
    await call(session, "POST", f"{emu.admin_url}/admin/stats/reset")
    _, fleet = await call(session, "GET", f"{emu.admin_url}/admin/stats")
    assert fleet["instances"] == {}


async def test_python_object_gives_the_same_counts(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    await tokens(session, instance)
    totals = emu.totals()
    assert totals.grants == {"password": 1}
    assert totals.token_requests == {200: 1}
    _, body = await call(session, "GET", f"{emu.admin_url}/admin/stats")
    assert body["totals"] == totals.to_json()


async def test_connections_accepted_tell_kept_alive_from_new(emu: Emulator) -> None:
    """Three requests on one kept-alive connection count one connection; three requests
    on connections closed after each count three. A reset starts the count again."""
    instance = emu.instances[0]
    async with aiohttp.ClientSession() as kept_alive:
        granted = await tokens(kept_alive, instance)
        for _ in range(2):
            await get_table(kept_alive, instance, PROBE, granted["access_token"])
    assert emu.totals().connections_accepted == 1
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as closing:
        for _ in range(3):
            await get_table(closing, instance, PROBE, granted["access_token"])
    assert emu.totals().connections_accepted == 4
    assert emu.totals().to_json()["connections_accepted"] == 4
    emu.reset_stats()
    assert emu.totals().connections_accepted == 0


async def test_bad_admin_requests_are_json_errors(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    admin = emu.admin_url
    status, body = await call(session, "GET", f"{admin}/admin/instances/dev1/stats")
    assert (status, body) == (404, {"error": "unknown instance dev1"})
    name = emu.instances[0].name
    status, body = await call(
        session, "POST", f"{admin}/admin/instances/{name}/clients/{'0' * 32}/revoke"
    )
    assert status == 404
    status, body = await call(
        session, "PATCH", f"{admin}/admin/instances/{name}/faults", {"nope": 1}
    )
    assert status == 400
    assert body["error"] == "invalid request"
    status, body = await call(
        session, "PATCH", f"{admin}/admin/instances/{name}/faults", {"reset": 2}
    )
    assert status == 400
    async with session.post(f"{admin}/admin/clock", data=b"{not json") as response:
        assert response.status == 400
