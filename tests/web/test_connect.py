"""The connect flow over HTTP: the authorize redirect, PKCE, and the callback's checks."""

from __future__ import annotations

import base64
import hashlib

from yarl import URL

from monitor.clock import ManualClock
from monitor.model import State
from monitor.secret import Secret
from monitor.web.auth import SESSION_COOKIE
from monitor.web.pending import PendingAuthorizations, code_challenge
from tests.web.conftest import ADMIN, PUBLIC_URL, Client, bearer
from tests.web.fakes import REFRESH_TOKEN, FakeFleet

A = bearer(ADMIN)
CODE = "C" * 86


async def start(client: Client, connection_id: str = "acme-prod") -> URL:
    response = await client.get(f"/connect/{connection_id}", headers=A, allow_redirects=False)
    assert response.status == 302, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    return URL(response.headers["Location"])


async def callback(client: Client, **params: str) -> tuple[int, str]:
    response = await client.get("/oauth/callback", params=params, headers={"Accept": "text/html"})
    assert response.content_type == "text/html"
    return response.status, await response.text()


async def test_connect_redirects_to_the_authorize_endpoint_with_pkce(client: Client) -> None:
    location = await start(client)
    assert (location.scheme, location.host, location.path) == (
        "https",
        "acme.service-now.com",
        "/oauth_auth.do",
    )
    query = location.query
    assert set(query) == {
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "scope",
        "code_challenge",
        "code_challenge_method",
    }
    assert query["response_type"] == "code"
    assert query["client_id"] == "c" * 32
    assert query["redirect_uri"] == f"{PUBLIC_URL}/oauth/callback"
    assert query["scope"] == "useraccount"
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 43
    challenge = query["code_challenge"]
    assert len(challenge) == 43
    assert "=" not in challenge


async def test_callback_exchanges_the_code_with_the_matching_verifier(
    client: Client, fleet: FakeFleet
) -> None:
    location = await start(client)
    status, page = await callback(client, state=location.query["state"], code=CODE)
    assert status == 200, page
    assert "acme-prod is authorized again" in page
    assert "no restart is needed" in page
    [done] = fleet.completions
    assert done.connection_id == "acme-prod"
    assert done.code == CODE
    assert done.redirect_uri == f"{PUBLIC_URL}/oauth/callback"
    assert 43 <= len(done.code_verifier) <= 128
    digest = hashlib.sha256(done.code_verifier.encode()).digest()
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert expected == location.query["code_challenge"]
    assert CODE not in page
    assert fleet.by_id["acme-prod"].health.state is State.PENDING  # recovering


async def test_a_state_works_once(client: Client, fleet: FakeFleet) -> None:
    state = (await start(client)).query["state"]
    assert (await callback(client, state=state, code=CODE))[0] == 200
    status, page = await callback(client, state=state, code=CODE)
    assert status == 403
    assert "already used" in page
    assert len(fleet.completions) == 1


async def test_a_state_expires_after_ten_minutes(
    client: Client, fleet: FakeFleet, clock: ManualClock
) -> None:
    state = (await start(client)).query["state"]
    clock.advance(600.0)
    status, page = await callback(client, state=state, code=CODE)
    assert status == 403
    assert "longer than 10 minutes" in page
    assert 'href="/connect/acme-prod"' in page  # start again
    assert fleet.completions == []


async def test_a_state_just_inside_ten_minutes_still_works(
    client: Client, fleet: FakeFleet, clock: ManualClock
) -> None:
    state = (await start(client)).query["state"]
    clock.advance(599.0)
    assert (await callback(client, state=state, code=CODE))[0] == 200
    assert len(fleet.completions) == 1


async def test_each_state_is_bound_to_its_own_connection(client: Client, fleet: FakeFleet) -> None:
    first = await start(client, "acme-prod")
    second = await start(client, "acme-test")
    assert (await callback(client, state=second.query["state"], code="second"))[0] == 200
    assert (await callback(client, state=first.query["state"], code="first"))[0] == 200
    by_connection = {c.connection_id: c for c in fleet.completions}
    assert by_connection["acme-test"].code == "second"
    assert by_connection["acme-prod"].code == "first"
    for connection_id, location in (("acme-prod", first), ("acme-test", second)):
        verifier = Secret(by_connection[connection_id].code_verifier)
        assert code_challenge(verifier) == location.query["code_challenge"]


async def test_success_forgets_other_flows_of_the_same_connection(
    client: Client, fleet: FakeFleet
) -> None:
    first = (await start(client)).query["state"]
    second = (await start(client)).query["state"]
    assert (await callback(client, state=second, code=CODE))[0] == 200
    assert (await callback(client, state=first, code=CODE))[0] == 403
    assert len(fleet.completions) == 1


async def test_unknown_or_missing_state(client: Client, fleet: FakeFleet) -> None:
    assert (await callback(client, state="forged", code=CODE))[0] == 403
    status, page = await callback(client, code=CODE)
    assert status == 400
    assert "no state" in page
    assert fleet.completions == []


async def test_the_user_declined(client: Client, fleet: FakeFleet) -> None:
    state = (await start(client)).query["state"]
    status, page = await callback(
        client, state=state, error="access_denied", error_description="<b>no</b>"
    )
    assert status == 400
    assert "did not authorize" in page
    assert "access_denied" in page
    assert "<b>no</b>" not in page
    assert fleet.completions == []
    assert (await callback(client, state=state, code=CODE))[0] == 403  # used up


async def test_no_code(client: Client, fleet: FakeFleet) -> None:
    state = (await start(client)).query["state"]
    status, page = await callback(client, state=state)
    assert status == 400
    assert "no authorization code" in page
    assert fleet.completions == []


async def test_a_failed_exchange_says_so_without_the_secret(
    client: Client, fleet: FakeFleet
) -> None:
    fleet.exchange_ok = False
    state = (await start(client)).query["state"]
    status, page = await callback(client, state=state, code=CODE)
    assert status == 502
    assert "did not accept" in page
    assert "rejected" in page
    assert REFRESH_TOKEN not in page
    assert CODE not in page
    assert fleet.by_id["acme-prod"].health.state is State.CREDENTIALS_EXPIRED


async def test_a_connection_removed_meanwhile_is_a_404(client: Client, fleet: FakeFleet) -> None:
    state = (await start(client)).query["state"]
    del fleet.by_id["acme-prod"]
    assert (await callback(client, state=state, code=CODE))[0] == 404


async def test_a_connection_whose_grant_changed_meanwhile_is_a_409(
    client: Client, fleet: FakeFleet
) -> None:
    state = (await start(client)).query["state"]
    del fleet.targets["acme-prod"]
    assert (await callback(client, state=state, code=CODE))[0] == 409
    assert fleet.completions == []


async def test_connect_refusals(client: Client) -> None:
    for path, status in (("/connect/ghost", 404), ("/connect/initech-prod", 409)):
        response = await client.get(path, headers=A, allow_redirects=False)
        assert response.status == status
        assert response.content_type == "text/html"
        json_response = await client.get(
            path, headers={**A, "Accept": "application/json"}, allow_redirects=False
        )
        assert json_response.status == status
        assert (await json_response.json())["status"] == status
    page = await (await client.get("/connect/initech-prod", headers=A)).text()
    assert "does not use the authorization-code grant" in page


async def test_connect_on_a_replica_that_does_not_keep_the_connection(
    client: Client, fleet: FakeFleet
) -> None:
    fleet.held_elsewhere.add("acme-prod")
    response = await client.get("/connect/acme-prod", headers=A, allow_redirects=False)
    assert response.status == 409
    assert "only that replica can store its new tokens" in await response.text()


async def test_a_slack_link_without_a_session_shows_the_sign_in_page(client: Client) -> None:
    response = await client.get("/connect/acme-prod", allow_redirects=False)
    assert response.status == 401
    page = await response.text()
    assert 'action="/connect/acme-prod"' in page
    assert 'type="password" name="token"' in page
    assert 'href="/connect/acme-prod">continue here' in page
    # Signing in with the admin token goes straight on to ServiceNow, and keeps a session.
    signed = await client.get(f"/connect/acme-prod?token={ADMIN}", allow_redirects=False)
    assert signed.status == 303
    assert signed.headers["Location"] == "/connect/acme-prod"
    assert SESSION_COOKIE in signed.cookies
    again = await client.get("/connect/acme-prod", allow_redirects=False)
    assert again.status == 302
    assert URL(again.headers["Location"]).host == "acme.service-now.com"


def test_pkce_challenge_matches_rfc_7636_appendix_b() -> None:
    verifier = Secret("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_pending_authorizations_are_bounded() -> None:
    clock = ManualClock()
    pending = PendingAuthorizations(clock, capacity=3)
    states = [pending.begin(f"c{i}", "http://x/oauth/callback")[0] for i in range(5)]
    assert len(pending) == 3
    assert pending.take(states[0]) is None  # the oldest went first
    taken = pending.take(states[4])
    assert taken is not None
    assert taken.connection_id == "c4"
    clock.advance(601)
    pending.begin("late", "http://x/oauth/callback")
    assert len(pending) == 1  # expired ones are pruned on the way
