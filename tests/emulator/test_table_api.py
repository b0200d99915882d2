"""Facts of the Table API: shapes, parameters, headers, error envelopes and Bearer checks."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from monitor.emulator import Emulator, Instance
from tests.emulator.calls import PROBE, bearer, get_table, tokens

NOT_AUTHENTICATED = {
    "error": {
        "message": "User Not Authenticated",
        "detail": "Required to provide Auth information",
    },
    "status": "failure",
}
NO_RECORD = {
    "error": {
        "message": "No Record found",
        "detail": "Record doesn't exist or ACL restricts the record retrieval",
    },
    "status": "failure",
}


@pytest.fixture
async def access(emu: Emulator, session: aiohttp.ClientSession) -> str:
    token: str = (await tokens(session, emu.instances[0]))["access_token"]
    return token


async def raw_get(
    session: aiohttp.ClientSession, instance: Instance, path: str, token: str
) -> tuple[int, str]:
    async with session.get(instance.base_url + path, headers=bearer(token)) as response:
        return response.status, await response.text()


async def test_probe_answers_one_sys_id(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    status, body, headers = await get_table(session, emu.instances[0], PROBE, access)
    assert status == 200
    assert headers["X-Is-Logged-In"] == "true"
    assert len(body["result"]) == 1
    assert list(body["result"][0]) == ["sys_id"]
    assert len(body["result"][0]["sys_id"]) == 32
    assert "X-Total-Count" not in headers  # sysparm_no_count
    assert "Link" not in headers  # sysparm_suppress_pagination_header
    assert emu.stats(emu.instances[0].name).table_requests[200] == 1


async def test_every_value_is_a_string_and_null_is_empty(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    _, body, _ = await get_table(
        session, instance, "/api/now/table/incident?sysparm_exclude_reference_link=true", access
    )
    records = body["result"]
    assert len(records) == 25
    assert all(isinstance(v, str) for record in records for v in record.values())
    assert {record["active"] for record in records} <= {"true", "false"}
    assert any(record["assigned_to"] == "" for record in records)
    opened = records[0]["opened_at"]
    assert len(opened) == len("2016-01-19 04:52:04")
    assert (opened[4], opened[10], opened[13]) == ("-", " ", ":")


async def test_references_link_to_the_instance_itself(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    _, body, _ = await get_table(
        session,
        instance,
        "/api/now/table/incident?sysparm_fields=caller_id&sysparm_limit=1",
        access,
    )
    reference = body["result"][0]["caller_id"]
    assert list(reference) == ["link", "value"]
    assert reference["link"] == f"{instance.base_url}/api/now/table/sys_user/{reference['value']}"
    status, user, _ = await get_table(session, instance, urlsplit(reference["link"]).path, access)
    assert status == 200
    assert user["result"]["sys_id"] == reference["value"]


async def test_display_values(emu: Emulator, session: aiohttp.ClientSession, access: str) -> None:
    instance = emu.instances[0]
    path = "/api/now/table/incident?sysparm_fields=state,caller_id&sysparm_limit=1"
    _, raw, _ = await get_table(session, instance, path, access)
    _, shown, _ = await get_table(session, instance, path + "&sysparm_display_value=true", access)
    _, both, _ = await get_table(session, instance, path + "&sysparm_display_value=all", access)
    raw, shown, both = raw["result"][0], shown["result"][0], both["result"][0]
    assert raw["state"].isdigit()
    assert shown["state"] in {"New", "In Progress", "On Hold", "Resolved", "Closed", "Canceled"}
    assert both["state"] == {"display_value": shown["state"], "value": raw["state"]}
    assert list(shown["caller_id"]) == ["display_value", "link"]
    assert both["caller_id"]["value"] == raw["caller_id"]["value"]
    assert list(both["caller_id"]) == ["display_value", "link", "value"]


async def test_exclude_reference_link_gives_plain_values(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    path = (
        "/api/now/table/incident?sysparm_fields=caller_id&sysparm_limit=1"
        "&sysparm_exclude_reference_link=true"
    )
    _, body, _ = await get_table(session, emu.instances[0], path, access)
    assert isinstance(body["result"][0]["caller_id"], str)


async def test_fields_keep_order_and_unknown_fields_are_ignored(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    path = "/api/now/table/sys_user?sysparm_fields=name,no_such_field,sys_id&sysparm_limit=2"
    _, body, _ = await get_table(session, emu.instances[0], path, access)
    assert [list(record) for record in body["result"]] == [["name", "sys_id"]] * 2


async def test_query_filters_and_orders(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    path = (
        "/api/now/table/incident?sysparm_query=active=true^ORDERBYDESCnumber"
        "&sysparm_fields=number,active"
    )
    _, body, headers = await get_table(session, instance, path, access)
    numbers = [record["number"] for record in body["result"]]
    assert all(record["active"] == "true" for record in body["result"])
    assert numbers == sorted(numbers, reverse=True)
    assert headers["X-Total-Count"] == str(len(numbers))
    path = (
        "/api/now/table/sys_user"
        "?sysparm_query=user_name=snowmon.integration^ORuser_nameSTARTSWITHabel"
    )
    _, body, _ = await get_table(session, instance, path, access)
    names = sorted(r["user_name"] for r in body["result"])
    assert len(names) == 2
    assert names[0].startswith("abel.")
    assert names[1] == "snowmon.integration"
    path = "/api/now/table/sys_user?sysparm_query=no_such_field=1&sysparm_no_count=true"
    _, body, _ = await get_table(session, instance, path, access)
    assert len(body["result"]) == 11  # a condition on an unknown field is ignored


async def test_total_count_and_link_header_with_its_quirks(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    path = "/api/now/table/incident?sysparm_fields=number&sysparm_limit=10"
    _, body, headers = await get_table(session, instance, path, access)
    assert headers["X-Total-Count"] == "25"
    assert len(body["result"]) == 10
    link = headers["Link"]
    assert ", " not in link
    parts = link.split(",")
    assert [part.rsplit(";", 1)[1] for part in parts] == [
        'rel="first"', 'rel="prev"', 'rel="next"', 'rel="last"'
    ]  # fmt: skip
    offsets = [
        parse_qs(urlsplit(part.split(";")[0].strip("<>")).query)["sysparm_offset"][0]
        for part in parts
    ]
    assert offsets == ["0", "-1", "10", "20"]
    first = part_url = parts[0].split(";")[0].strip("<>")
    assert first.startswith(f"{instance.base_url}/api/now/table/incident?")
    assert parse_qs(urlsplit(part_url).query)["sysparm_limit"] == ["10"]
    _, second, headers = await get_table(session, instance, path + "&sysparm_offset=10", access)
    assert second["result"][0] != body["result"][0]
    offsets = [
        parse_qs(urlsplit(p.split(";")[0].strip("<>")).query)["sysparm_offset"][0]
        for p in headers["Link"].split(",")
    ]
    assert offsets == ["0", "0", "20", "20"]


async def test_limit_defaults_to_10000_and_offset_pages(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    _, body, headers = await get_table(session, instance, "/api/now/table/incident", access)
    assert len(body["result"]) == 25
    assert "sysparm_limit=10000" in headers["Link"]
    _, body, _ = await get_table(
        session, instance, "/api/now/table/incident?sysparm_offset=24", access
    )
    assert len(body["result"]) == 1


async def test_versioned_paths_and_single_records(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    for prefix in ("/api/now/table", "/api/now/v1/table", "/api/now/v2/table"):
        status, body, _ = await get_table(
            session, instance, f"{prefix}/sys_user?sysparm_limit=1", access
        )
        assert status == 200
        sys_id = body["result"][0]["sys_id"]
        status, one, _ = await get_table(session, instance, f"{prefix}/sys_user/{sys_id}", access)
        assert status == 200
        assert isinstance(one["result"], dict)
        assert one["result"]["sys_id"] == sys_id


async def test_no_match_is_an_empty_result_but_404_on_v1(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    query = "sys_user?sysparm_query=user_name=nobody"
    status, text = await raw_get(session, instance, f"/api/now/table/{query}", access)
    assert (status, text) == (200, '{"result":[]}')
    status, body, _ = await get_table(session, instance, f"/api/now/v2/table/{query}", access)
    assert (status, body) == (200, {"result": []})
    status, body, _ = await get_table(session, instance, f"/api/now/v1/table/{query}", access)
    assert (status, body) == (404, NO_RECORD)


async def test_unknown_sys_id_is_404_no_record(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    for sys_id in ("0" * 32, "not-a-sys-id"):
        status, text = await raw_get(
            session, emu.instances[0], f"/api/now/table/sys_user/{sys_id}", access
        )
        assert status == 404
        assert json.loads(text) == NO_RECORD
        assert text.startswith('{"error":{"message":"No Record found","detail":')


async def test_invalid_table_is_400_with_null_detail(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    status, text = await raw_get(
        session, emu.instances[0], "/api/now/table/not_a_real_class", access
    )
    assert status == 400
    assert (
        text
        == '{"error":{"message":"Invalid table not_a_real_class","detail":null},"status":"failure"}'
    )


async def test_missing_bad_and_foreign_tokens_are_401(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance, other = emu.instances[0], emu.instances[1]
    async with session.get(instance.base_url + PROBE) as response:
        assert response.status == 401
        assert response.headers["X-Is-Logged-In"] == "false"
        assert await response.json() == NOT_AUTHENTICATED
    for token in ("bogus", "A" * 86):
        status, body, _ = await get_table(session, instance, PROBE, token)
        assert (status, body) == (401, NOT_AUTHENTICATED)
    status, body, _ = await get_table(session, other, PROBE, access)
    assert (status, body) == (401, NOT_AUTHENTICATED)
    assert emu.stats(instance.name).rejected_access_tokens == 2
    assert emu.stats(other.name).rejected_access_tokens == 1


async def test_expired_access_tokens_are_401_and_counted(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    emu.clock.advance(1799)
    assert (await get_table(session, instance, PROBE, access))[0] == 200
    emu.clock.advance(2)
    status, body, _ = await get_table(session, instance, PROBE, access)
    assert (status, body) == (401, NOT_AUTHENTICATED)
    await tokens(session, instance)  # issuing forgets expired tokens: still recognised later
    emu.clock.advance(86_400 * 30)
    assert (await get_table(session, instance, PROBE, access))[0] == 401
    stats = emu.stats(instance.name)
    assert stats.expired_token_uses == 2
    assert stats.clients[instance.client_id].expired_token_uses == 2
    assert stats.rejected_access_tokens == 0
    assert stats.table_requests == {200: 1, 401: 2}


async def test_basic_authentication_also_works(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    credentials = base64.b64encode(f"{instance.username}:{instance.password}".encode()).decode()
    async with session.get(
        instance.base_url + PROBE, headers={"Authorization": f"Basic {credentials}"}
    ) as response:
        assert response.status == 200
    wrong = base64.b64encode(f"{instance.username}:nope".encode()).decode()
    async with session.get(
        instance.base_url + PROBE, headers={"Authorization": f"Basic {wrong}"}
    ) as response:
        assert response.status == 401


async def test_writes_are_refused_with_an_envelope(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    async with session.post(
        instance.base_url + "/api/now/table/incident", json={}, headers=bearer(access)
    ) as response:
        assert response.status == 405
        assert (await response.json())["status"] == "failure"
