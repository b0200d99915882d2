"""The fleet: instance addressing, names, deterministic credentials, headers on every answer."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import aiohttp

from monitor.emulator import Emulator, FleetOptions
from tests.emulator.calls import PROBE, bearer, get_table, password_form, post_token, tokens


async def test_each_instance_of_a_small_fleet_is_its_own_loopback_host(emu: Emulator) -> None:
    urls = [urlsplit(instance.base_url) for instance in emu.instances]
    assert len({url.hostname for url in urls}) == 3
    for url in urls:
        assert url.scheme == "http"
        assert re.fullmatch(r"127\.0\.0\.\d+", url.hostname or "")
        assert url.hostname != "127.0.0.1"
        assert url.path == ""


async def test_large_fleets_share_sockets_behind_path_prefixes(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(FleetOptions(instances=5, max_sockets=2)) as emulator:
        first, third = emulator.instances[0], emulator.instances[2]
        assert first.base_url.endswith("/" + first.name)
        assert urlsplit(first.base_url).netloc == urlsplit(third.base_url).netloc
        access = (await tokens(session, first))["access_token"]
        assert (await get_table(session, first, PROBE, access))[0] == 200
        assert (await get_table(session, third, PROBE, access))[0] == 401
        status, _ = await post_token(session, third, password_form(first))
        assert status == 401
        netloc = urlsplit(first.base_url).netloc
        async with session.get(f"http://{netloc}/dev999999/oauth_token.do") as response:
            assert response.status == 404
            assert response.headers["Server"] == "snow_adc"


async def test_names_client_ids_and_usernames_look_like_servicenow(emu: Emulator) -> None:
    for number, instance in enumerate(emu.instances):
        assert instance.name == f"dev{100_001 + number}"
        assert re.fullmatch(r"[0-9a-f]{32}", instance.client_id)
        assert instance.username == "snowmon.integration"
        assert len(instance.client_secret) >= 16
    assert len({instance.client_secret for instance in emu.instances}) == 3


async def test_same_seed_same_credentials() -> None:
    async with Emulator(FleetOptions(instances=2, seed=5)) as one:
        first = [(i.client_id, i.client_secret, i.password) for i in one.instances]
    async with Emulator(FleetOptions(instances=2, seed=5)) as two:
        second = [(i.client_id, i.client_secret, i.password) for i in two.instances]
    async with Emulator(FleetOptions(instances=2, seed=6)) as three:
        third = [(i.client_id, i.client_secret, i.password) for i in three.instances]
    assert first == second
    assert first != third


async def test_several_oauth_applications_per_instance(session: aiohttp.ClientSession) -> None:
    async with Emulator(FleetOptions(instances=1, clients_per_instance=2)) as emulator:
        instance = emulator.instances[0]
        second = instance.clients[1]
        form = password_form(instance, client_id=second.client_id, client_secret=second.secret)
        status, _ = await post_token(session, instance, form)
        assert status == 200
        assert emulator.stats(instance.name).clients[second.client_id].grants["password"] == 1


async def test_every_answer_carries_servicenow_headers_and_cookies(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    access = (await tokens(session, instance))["access_token"]
    for call in (
        session.get(instance.base_url + PROBE, headers=bearer(access)),
        session.get(instance.base_url + PROBE),
        session.post(instance.base_url + "/oauth_token.do", data=password_form(instance)),
        session.get(instance.base_url + "/nowhere"),
    ):
        async with call as response:
            assert response.headers["Server"] == "snow_adc"
            assert response.headers["X-Is-Logged-In"] in {"true", "false"}
            assert re.fullmatch(r"[0-9a-f]{12}", response.headers["X-Transaction-ID"])
            cookies = {c.split("=", 1)[0] for c in response.headers.getall("Set-Cookie")}
            assert cookies == {"JSESSIONID", "glide_user_route", "glide_session_store"}


async def test_json_is_gzip_and_chunked_when_the_client_accepts_gzip(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    access = (await tokens(session, instance))["access_token"]
    headers = {**bearer(access), "Accept-Encoding": "gzip, deflate"}
    async with session.get(instance.base_url + PROBE, headers=headers) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert "result" in await response.json()
    headers = {**bearer(access), "Accept-Encoding": "identity"}
    async with session.get(instance.base_url + PROBE, headers=headers) as response:
        assert "Content-Encoding" not in response.headers
        assert int(response.headers["Content-Length"]) > 0


async def test_unknown_paths_get_servicenow_pages_not_aiohttp_defaults(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    async with session.get(instance.base_url + "/not/here") as response:
        assert response.status == 404
        assert response.headers["Server"] == "snow_adc"
        assert "Not Found" in await response.text()
    for path in ("/api/now/nothing", "/api/now/table", "/api/x/y", "/api/now/table/a/b/c"):
        async with session.get(instance.base_url + path) as response:
            assert response.status == 400, path
            assert await response.json() == {
                "error": {
                    "message": "Requested URI does not represent any resource",
                    "detail": None,
                },
                "status": "failure",
            }
