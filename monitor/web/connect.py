"""The connect flow: re-authorizing a connection in a browser (OAuth authorization code +
PKCE S256) without restarting anything.

`GET /connect/{id}` (admin) sends the browser to the instance's `/oauth_auth.do` with a
fresh `state` and code challenge. After the user allows, ServiceNow sends the browser to
`GET /oauth/callback?code=...&state=...`. That route needs no token: the `state` is the
capability, created for an admin moments ago, unguessable (256 bits), bound to one
connection, single use and good for 10 minutes (an unknown, used or expired one is a
403); and the code is worthless without the verifier that never left this process. The
keeper then exchanges the code, stores the tokens and probes at once. Every outcome is
a short page in plain words.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlparse

from aiohttp import web
from yarl import URL

from monitor.secret import Secret
from monitor.telemetry.redact import redact_text
from monitor.web.html import html_response, message_page
from monitor.web.keys import CLOCK, FLEET, PENDING, SETTINGS
from monitor.web.page import duration_words
from monitor.web.pending import code_challenge
from monitor.web.problems import ApiError
from monitor.web.render import holder_words, rfc3339

_OAUTH_ERROR: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def _again(connection_id: str) -> tuple[str, str]:
    return f"/connect/{connection_id}", "Start again"


async def start(request: web.Request) -> web.Response:
    connection_id = request.match_info["id"]
    fleet = request.app[FLEET]
    if fleet.status(connection_id) is None:
        raise ApiError(404, f"There is no connection called {connection_id!r}.")
    target = fleet.authorize_target(connection_id)
    if target is None:
        raise ApiError(
            409,
            f"Connection {connection_id!r} does not use the authorization-code grant, so it "
            "cannot be re-authorized in a browser. Fix its credentials in the config instead.",
        )
    if not fleet.holds(connection_id):
        # Its tokens may only be written by the replica holding its lease, and the flow's
        # state lives in this process: start it on that replica.
        holder = holder_words(fleet.status(connection_id))
        raise ApiError(
            409,
            f"Connection {connection_id!r} is kept by {holder} right now, and only that "
            "replica can store its new tokens. Open this page on it "
            "(with a load balancer: route /connect/ and /oauth/callback there).",
            links=[_again(connection_id)],
        )
    redirect_uri = request.app[SETTINGS].redirect_uri
    state, pending = request.app[PENDING].begin(connection_id, redirect_uri)
    params = {
        "response_type": "code",
        "client_id": target.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": code_challenge(pending.code_verifier),
        "code_challenge_method": "S256",
    }
    if target.scopes:
        params["scope"] = " ".join(target.scopes)
    location = URL(target.instance_url.rstrip("/") + "/oauth_auth.do").with_query(params)
    return web.Response(
        status=302,
        headers={
            "Location": str(location),
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


async def callback(request: web.Request) -> web.Response:
    query = request.query
    state = query.get("state", "")
    if not state:
        raise ApiError(
            400,
            "This address finishes a re-authorization, but the link has no state. "
            "Start again from the status page.",
        )
    pending = request.app[PENDING].take(state)
    now = request.app[CLOCK].now()
    if pending is None:
        raise ApiError(
            403,
            "This authorization link is unknown, was already used, or has expired "
            "(links work once, for 10 minutes). Start again from the status page.",
        )
    connection_id = pending.connection_id
    if pending.expired(now):
        raise ApiError(
            403,
            f"The authorization of {connection_id!r} took longer than 10 minutes, so this "
            "link has expired. Nothing changed. Start again.",
            links=[_again(connection_id)],
        )
    error = query.get("error")
    if error is not None:
        code = error if _OAUTH_ERROR.fullmatch(error) else "an error"
        raise ApiError(
            400,
            f"ServiceNow did not authorize {connection_id!r} ({code}). Nothing changed. "
            "If you declined by mistake, start again.",
            links=[_again(connection_id)],
        )
    code_value = query.get("code", "")
    if not code_value:
        raise ApiError(
            400,
            f"ServiceNow sent no authorization code for {connection_id!r}. Nothing changed.",
            links=[_again(connection_id)],
        )
    fleet = request.app[FLEET]
    if fleet.status(connection_id) is None:
        raise ApiError(404, f"Connection {connection_id!r} no longer exists in the config.")
    if fleet.authorize_target(connection_id) is None:
        raise ApiError(
            409, f"Connection {connection_id!r} no longer uses the authorization-code grant."
        )
    try:
        result = await fleet.complete_authorization(
            connection_id, Secret(code_value), pending.redirect_uri, pending.code_verifier
        )
    except KeyError:
        raise ApiError(404, f"Connection {connection_id!r} no longer exists.") from None
    if not result.ok or result.tokens is None:
        why = result.failure.value if result.failure is not None else "no tokens"
        detail = redact_text(result.detail)[:200]
        raise ApiError(
            502,
            f"ServiceNow did not accept the authorization of {connection_id!r} ({why}"
            f"{': ' + detail if detail else ''}). Nothing changed. Authorization codes are "
            "short-lived: start again and finish within a minute or two.",
            links=[_again(connection_id)],
        )
    request.app[PENDING].forget_connection(connection_id)
    status = fleet.status(connection_id)
    host = urlparse(status.info.instance_url).hostname if status is not None else None
    paragraphs = [
        f"snowmon got new tokens for {connection_id!r}"
        + (f" from {host}" if host else "")
        + " and stored them. It checks the connection right away; no restart is needed.",
    ]
    expires = result.tokens.refresh_expires_at
    if expires is not None:
        paragraphs.append(
            f"The new refresh token lasts {duration_words(expires - now)}, "
            f"until {(rfc3339(expires) or '')[:16].replace('T', ' ')} UTC."
        )
    return html_response(
        message_page(
            f"{connection_id} is authorized again",
            paragraphs,
            ok=True,
            links=[("/", "Status page")],
        )
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/connect/{id}", start)
    app.router.add_get("/oauth/callback", callback)
