"""Faults: hibernation, maintenance, ACLs, rate limits, overload, errors, broken bodies."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest
from pydantic import ValidationError

from monitor.emulator import Emulator
from tests.emulator.calls import (
    GENERIC_DENIED,
    PROBE,
    bearer,
    get_table,
    password_form,
    post_token,
    refresh_form,
    tokens,
)


@pytest.fixture
async def access(emu: Emulator, session: aiohttp.ClientSession) -> str:
    token: str = (await tokens(session, emu.instances[0]))["access_token"]
    return token


async def test_hibernating_instance_answers_every_path_with_html_200(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    emu.faults(instance.name).hibernate = True
    calls = [
        session.post(instance.base_url + "/oauth_token.do", data=password_form(instance)),
        session.get(instance.base_url + PROBE, headers=bearer(access)),
        session.get(instance.base_url + "/oauth_auth.do"),
        session.get(instance.base_url + "/no/such/page"),
    ]
    for call in calls:
        async with call as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            page = await response.text()
        assert "Instance Hibernating page" in page
        assert "<h1>Your instance is hibernating</h1>" in page
        assert "https://developer.servicenow.com/dev.do#!/home?wu=true" in page
    stats = emu.stats(instance.name)
    assert stats.table_requests == {200: 1}  # hibernation pages are counted as served
    assert stats.token_requests == {200: 2}  # the grant before, and the page
    emu.faults(instance.name).hibernate = False
    assert (await get_table(session, instance, PROBE, access))[0] == 200


async def test_maintenance_is_an_html_503(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    emu.set_faults(instance.name, maintenance=True)
    async with session.get(instance.base_url + PROBE, headers=bearer(access)) as response:
        assert response.status == 503
        assert response.headers["Content-Type"].startswith("text/html")


async def test_acl_denied_table_is_403_user_not_authorized(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    emu.set_faults(instance.name, acl_deny=["sys_user"])
    status, body, _ = await get_table(session, instance, PROBE, access)
    assert status == 403
    assert body["error"]["message"] == "User Not Authorized"
    assert body["status"] == "failure"
    assert (await get_table(session, instance, "/api/now/table/incident", access))[0] == 200


async def test_query_on_a_denied_field_is_403_insufficient_rights(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    emu.set_faults(instance.name, deny_query_fields=["email"])
    status, body, _ = await get_table(
        session, instance, "/api/now/table/sys_user?sysparm_query=emailLIKEexample", access
    )
    assert (status, body) == (
        403,
        {
            "error": {
                "message": "Insufficient rights to query records",
                "detail": "Field(s) present in the query do not have permission to be read",
            },
            "status": "failure",
        },
    )


async def test_rate_limit_headers_commit_every_30_s_and_429_with_retry_after(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    emu.clock.set(1_800_000_000.0)  # a round hour: the window is predictable
    access = (await tokens(session, instance))["access_token"]
    emu.set_faults(instance.name, rate_limit=3)
    statuses = []
    for _ in range(5):  # counts are committed every 30 s: a burst overshoots the limit
        status, _, headers = await get_table(session, instance, PROBE, access)
        statuses.append(status)
        assert headers["X-RateLimit-Limit"] == "3"
        assert headers["X-RateLimit-Reset"] == str(1_800_000_000 + 3600)
        assert len(headers["X-RateLimit-Rule"]) == 32
        assert "X-RateLimit-Remaining" not in headers
    assert statuses == [200] * 5
    emu.clock.advance(30)
    status, body, headers = await get_table(session, instance, PROBE, access)
    assert status == 429
    assert body == {
        "error": {
            "message": "Rate limit exceeded",
            "detail": "Rate limit of 3 requests per hour for Table API exceeded",
        },
        "status": "failure",
    }
    assert 3560 <= int(headers["Retry-After"]) <= 3570
    emu.clock.advance(3600)  # a new hour
    access = (await tokens(session, instance))["access_token"]
    assert (await get_table(session, instance, PROBE, access))[0] == 200


async def test_full_semaphore_is_429_without_json(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    emu.set_faults(instance.name, semaphore=1.0)
    async with session.get(instance.base_url + PROBE, headers=bearer(access)) as response:
        assert response.status == 429
        with pytest.raises(json.JSONDecodeError):
            json.loads(await response.text())


async def test_server_errors(emu: Emulator, session: aiohttp.ClientSession, access: str) -> None:
    instance = emu.instances[0]
    emu.set_faults(instance.name, error_500=1.0)
    async with session.get(instance.base_url + PROBE, headers=bearer(access)) as response:
        assert response.status == 500
        text = await response.text()
    assert text.startswith('{"error":{"detail":"Internal server error Check logs')
    assert json.loads(text)["error"]["message"] == "Internal server error"
    for field, status in (("error_502", 502), ("error_503", 503)):
        emu.clear_faults(instance.name)
        emu.set_faults(instance.name, **{field: 1.0})
        async with session.get(instance.base_url + PROBE, headers=bearer(access)) as response:
            assert response.status == status
            assert response.headers["Content-Type"].startswith("text/html")


async def test_error_share_hits_about_that_share(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    emu.set_faults(instance.name, error_503=0.5)
    for _ in range(60):
        async with session.get(instance.base_url + PROBE, headers=bearer(access)) as response:
            await response.read()
    counts = emu.stats(instance.name).table_requests
    assert counts[200] + counts[503] == 60
    assert 15 <= counts[503] <= 45


async def test_connection_reset(emu: Emulator, session: aiohttp.ClientSession, access: str) -> None:
    instance = emu.instances[0]
    emu.set_faults(instance.name, reset=1.0)
    with pytest.raises(aiohttp.ClientOSError):
        async with session.get(instance.base_url + PROBE, headers=bearer(access)) as response:
            await response.read()
    assert emu.stats(instance.name).table_requests[0] >= 1


async def test_truncated_body(emu: Emulator, session: aiohttp.ClientSession, access: str) -> None:
    instance = emu.instances[0]
    emu.set_faults(instance.name, truncated=1.0)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get(
            instance.base_url + "/api/now/table/incident", headers=bearer(access)
        ) as response:
            await response.read()


async def test_malformed_json(emu: Emulator, session: aiohttp.ClientSession, access: str) -> None:
    instance = emu.instances[0]
    emu.set_faults(instance.name, malformed=1.0)
    async with session.get(instance.base_url + PROBE, headers=bearer(access)) as response:
        assert response.status == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(await response.text())
    emu.set_faults(instance.name, on=["token"])
    async with session.post(
        instance.base_url + "/oauth_token.do", data=password_form(instance)
    ) as response:
        assert response.status == 200
        text = await response.text()
    assert text.startswith('{"access_token":')
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


async def test_slow_body_takes_its_time(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    emu.set_faults(instance.name, slow_body=0.3)
    started = time.monotonic()
    status, body, _ = await get_table(session, instance, "/api/now/table/incident", access)
    assert time.monotonic() - started >= 0.29
    assert status == 200
    assert len(body["result"]) == 25


async def test_latency_applies_where_asked(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    emu.set_faults(instance.name, latency=0.2, jitter=0.05, latency_on=["token"])
    started = time.monotonic()
    await get_table(session, instance, PROBE, access)
    assert time.monotonic() - started < 0.15
    started = time.monotonic()
    await post_token(session, instance, password_form(instance))
    assert 0.2 <= time.monotonic() - started < 1.0
    emu.set_faults(instance.name, latency_on=["table"])
    started = time.monotonic()
    await get_table(session, instance, PROBE, access)
    assert time.monotonic() - started >= 0.2


async def test_cancelled_transaction_is_a_200_with_partial_result_and_error(
    emu: Emulator, session: aiohttp.ClientSession, access: str
) -> None:
    instance = emu.instances[0]
    emu.set_faults(instance.name, cancelled=1.0)
    async with session.get(
        instance.base_url + "/api/now/table/incident", headers=bearer(access)
    ) as response:
        assert response.status == 200
        text = await response.text()
    body = json.loads(text)
    assert list(body) == ["result", "error", "status"]
    assert len(body["result"]) == 12
    assert body["error"]["message"] == "Transaction cancelled: maximum execution time exceeded"
    assert list(body["error"]) == ["detail", "message"]
    assert body["status"] == "failure"


async def test_flaky_token_endpoint_consumes_nothing(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    refresh = (await tokens(session, instance))["refresh_token"]
    emu.set_faults(instance.name, flaky_token=1.0)
    for form in (password_form(instance), refresh_form(instance, refresh)):
        assert await post_token(session, instance, form) == (401, GENERIC_DENIED)
    emu.set_faults(instance.name, flaky_token=0.0)
    status, body = await post_token(session, instance, refresh_form(instance, refresh))
    assert status == 200
    assert body["refresh_token"] == refresh
    stats = emu.stats(instance.name).clients[instance.client_id]
    assert stats.flaky_denials == 2
    assert stats.grants["password"] == 1
    assert stats.rejected_refresh_tokens == 0


async def test_flaky_share_fails_some_and_passes_others(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    refresh = (await tokens(session, instance))["refresh_token"]
    emu.set_faults(instance.name, flaky_token=0.5)
    statuses = [
        (await post_token(session, instance, refresh_form(instance, refresh)))[0] for _ in range(40)
    ]
    assert 8 <= statuses.count(401) <= 32
    assert statuses.count(200) + statuses.count(401) == 40


async def test_faults_stay_on_their_instance(emu: Emulator, session: aiohttp.ClientSession) -> None:
    sick, healthy = emu.instances[0], emu.instances[1]
    emu.set_faults(sick.name, maintenance=True)
    token = (await tokens(session, healthy))["access_token"]
    assert (await get_table(session, healthy, PROBE, token))[0] == 200


def test_unknown_fault_names_and_bad_shares_are_rejected(emu: Emulator) -> None:
    name = emu.instances[0].name
    with pytest.raises(ValidationError):
        emu.set_faults(name, hibernated=True)
    with pytest.raises(ValidationError):
        emu.faults(name).error_500 = 1.5


async def test_rate_limit_counts_per_user(emu: Emulator, session: aiohttp.ClientSession) -> None:
    instance = emu.instances[0]
    emu.clock.set(1_800_000_000.0)
    emu.configure_client(instance.name, client_credentials=True)
    person = (await tokens(session, instance))["access_token"]
    form = {
        "grant_type": "client_credentials",
        "client_id": instance.client_id,
        "client_secret": instance.client_secret,
    }
    app = (await post_token(session, instance, form))[1]["access_token"]
    emu.set_faults(instance.name, rate_limit=1)
    assert (await get_table(session, instance, PROBE, person))[0] == 200
    emu.clock.advance(30)
    assert (await get_table(session, instance, PROBE, person))[0] == 429
    assert (await get_table(session, instance, PROBE, app))[0] == 200  # another user's count
