"""The status API over HTTP: lists, filters, pages, one connection, summary, actions."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.model import State
from tests.web.conftest import ADMIN, READ, Client, bearer
from tests.web.fakes import ACCESS_TOKEN, DAY, REFRESH_TOKEN, FakeFleet, make_status

R = bearer(READ)


async def get_json(client: Client, path: str, status: int = 200, **kw: Any) -> Any:
    response = await client.get(path, headers=kw.pop("headers", R), **kw)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def test_list_every_connection_by_id_with_all_fields(client: Client) -> None:
    body = await get_json(client, "/api/v1/connections")
    ids = [c["id"] for c in body["items"]]
    assert ids == ["acme-prod", "acme-test", "globex-prod", "initech-prod", "umbrella-dev"]
    assert (body["total"], body["limit"], body["offset"], body["next_offset"]) == (5, 100, 0, None)
    first = body["items"][0]
    assert first == {
        "id": "acme-prod",
        "instance_url": "https://acme.service-now.com",
        "grant": "authorization_code",
        "labels": {"customer": "acme", "env": "prod"},
        "state": "credentials_expired",
        "since": "2027-01-15T05:55:00.000Z",
        "consecutive_failures": 3,
        "consecutive_successes": 0,
        "last_reason": "auth_rejected",
        "last_error": "refresh rejected: ***",
        "last_probe": {
            "at": "2027-01-15T07:59:30.000Z",
            "reason": "auth_rejected",
            "duration_seconds": 0.125,
            "status": 401,
        },
        "access_token_expires_at": "2027-01-15T08:25:00.000Z",
        "refresh_token_expires_at": "2027-01-15T07:00:00.000Z",
        "refresh_token_issued_at": "2027-01-14T08:00:00.000Z",
        "can_renew_refresh_token": False,
        "next_probe_at": "2027-01-15T08:04:30.000Z",
        "next_refresh_at": "2027-01-15T08:20:00.000Z",
        "owner": "replica-1",
    }
    assert body["items"][4]["refresh_token_expires_at"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=healthy", ["acme-test", "initech-prod"]),
        ("state=failing&state=credentials_expired", ["acme-prod", "globex-prod"]),
        ("state=failing,pending", ["globex-prod", "umbrella-dev"]),
        ("label=customer:acme", ["acme-prod", "acme-test"]),
        ("label=customer:acme&label=env:prod", ["acme-prod"]),
        ("label=env:prod&state=healthy", ["initech-prod"]),
        ("label=customer:nobody", []),
        ("state=hibernating", []),
    ],
)
async def test_filters(client: Client, query: str, expected: list[str]) -> None:
    body = await get_json(client, f"/api/v1/connections?{query}")
    assert [c["id"] for c in body["items"]] == expected
    assert body["total"] == len(expected)


async def test_pages_cover_everything_once_in_a_stable_order(client: Client) -> None:
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        body = await get_json(client, f"/api/v1/connections?limit=2&offset={offset}")
        assert len(body["items"]) <= 2
        seen += [c["id"] for c in body["items"]]
        offset = body["next_offset"]
    assert seen == sorted(seen)
    assert len(seen) == 5
    past = await get_json(client, "/api/v1/connections?offset=50")
    assert (past["items"], past["total"], past["next_offset"]) == ([], 5, None)


@pytest.mark.parametrize(
    "query",
    [
        "state=dead",
        "state=",
        "label=nocolon",
        "label=:value",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "limit=-1",
        "limit=%D9%A3",  # an Arabic-Indic digit is a digit to str.isdigit, not to us
        "offset=-5",
        "offset=1e3",
        "limit=99999999999999999999",
    ],
)
async def test_bad_query_is_a_400_in_json(client: Client, query: str) -> None:
    body = await get_json(client, f"/api/v1/connections?{query}", status=400)
    assert body["error"] == "bad_request"
    assert body["status"] == 400
    assert body["message"]


async def test_one_connection_with_redacted_history(client: Client) -> None:
    body = await get_json(client, "/api/v1/connections/acme-prod")
    assert body["state"] == "credentials_expired"
    assert [h["kind"] for h in body["history"]] == ["state", "refresh", "probe"]
    assert body["history"][1] == {
        "at": "2027-01-15T07:59:40.000Z",
        "kind": "refresh",
        "outcome": "rejected",
        "detail": "token endpoint said no to ***",
        "duration_seconds": 0.25,
        "status": 401,
    }
    short = await get_json(client, "/api/v1/connections/acme-prod?history=1")
    assert len(short["history"]) == 1
    none = await get_json(client, "/api/v1/connections/acme-prod?history=0")
    assert none["history"] == []
    await get_json(client, "/api/v1/connections/acme-prod?history=501", status=400)


async def test_unknown_connection_is_a_404(client: Client) -> None:
    body = await get_json(client, "/api/v1/connections/nope", status=404)
    assert body == {"error": "not_found", "message": "no connection 'nope'", "status": 404}


async def test_summary_counts_and_expiring_refresh_tokens(client: Client) -> None:
    body = await get_json(client, "/api/v1/summary")
    assert body["total"] == 5
    assert list(body["by_state"]) == [
        "credentials_expired",
        "failing",
        "forbidden",
        "hibernating",
        "rate_limited",
        "degraded",
        "pending",
        "healthy",
    ]
    assert body["by_state"]["healthy"] == 2
    assert body["by_state"]["forbidden"] == 0
    assert body["by_label"]["customer"]["acme"] == {"credentials_expired": 1, "healthy": 1}
    assert body["by_label"]["env"]["prod"] == {
        "credentials_expired": 1,
        "failing": 1,
        "healthy": 1,
    }
    expiring = body["refresh_tokens_expiring"]
    assert [(e["id"], e["seconds_left"]) for e in expiring] == [
        ("acme-prod", -3600.0),
        ("acme-test", 2 * DAY),
    ]
    assert expiring[1]["can_renew_refresh_token"] is False
    wide = await get_json(client, "/api/v1/summary?expiring_within=8640000")
    assert len(wide["refresh_tokens_expiring"]) == 4  # umbrella-dev has none
    await get_json(client, "/api/v1/summary?expiring_within=-1", status=400)


async def test_probe_now_answers_the_result(client: Client, fleet: FakeFleet) -> None:
    response = await client.post("/api/v1/connections/globex-prod/probe", headers=bearer(ADMIN))
    assert response.status == 200
    body = await response.json()
    assert fleet.probes == ["globex-prod"]
    assert body["id"] == "globex-prod"
    assert body["result"]["ok"] is True
    assert body["result"]["reason"] == "ok"
    assert body["result"]["status"] == 200
    assert body["connection"]["id"] == "globex-prod"


async def test_actions_on_a_connection_another_replica_keeps_are_refused(
    client: Client, fleet: FakeFleet
) -> None:
    fleet.held_elsewhere.add("globex-prod")
    for action in ("probe", "refresh"):
        response = await client.post(
            f"/api/v1/connections/globex-prod/{action}", headers=bearer(ADMIN)
        )
        assert response.status == 409
        assert "kept by" in (await response.json())["message"]
    assert fleet.probes == []
    assert fleet.refreshes == []
    # Reading still answers for the whole fleet.
    assert (await get_json(client, "/api/v1/connections/globex-prod"))["id"] == "globex-prod"


async def test_refresh_now_never_shows_a_token(client: Client, fleet: FakeFleet) -> None:
    response = await client.post("/api/v1/connections/initech-prod/refresh", headers=bearer(ADMIN))
    assert response.status == 200
    text = await response.text()
    assert ACCESS_TOKEN not in text
    assert REFRESH_TOKEN not in text
    body = await response.json()
    assert fleet.refreshes == ["initech-prod"]
    assert body["result"]["ok"] is True
    assert body["result"]["refresh_token_expires_at"] == "2027-04-25T08:00:00.000Z"


async def test_refresh_without_a_live_refresh_token_is_a_409(
    client: Client, fleet: FakeFleet
) -> None:
    response = await client.post("/api/v1/connections/acme-prod/refresh", headers=bearer(ADMIN))
    assert response.status == 409
    body = await response.json()
    assert "/connect/acme-prod" in body["message"]
    assert fleet.refreshes == []


async def test_actions_on_unknown_connections_are_404(client: Client, fleet: FakeFleet) -> None:
    for action in ("probe", "refresh"):
        response = await client.post(f"/api/v1/connections/ghost/{action}", headers=bearer(ADMIN))
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"
    assert fleet.probes == fleet.refreshes == []


async def test_a_connection_that_vanishes_mid_action_is_a_404(
    client: Client, fleet: FakeFleet
) -> None:
    fleet.by_id["ghost-1"] = make_status("ghost-1", state=State.FAILING)
    original = fleet.probe_now

    async def vanish(connection_id: str) -> Any:
        del fleet.by_id[connection_id]
        return await original(connection_id)

    fleet.probe_now = vanish  # type: ignore[method-assign]
    response = await client.post("/api/v1/connections/ghost-1/probe", headers=bearer(ADMIN))
    assert response.status == 404


async def test_no_secret_in_any_read_answer(client: Client) -> None:
    for path in (
        "/api/v1/connections",
        "/api/v1/connections/acme-prod",
        "/api/v1/summary",
        "/",
    ):
        response = await client.get(path, headers=R)
        text = await response.text()
        assert response.status == 200
        for secret in (ACCESS_TOKEN, REFRESH_TOKEN, READ, ADMIN):
            assert secret not in text, (path, secret)
