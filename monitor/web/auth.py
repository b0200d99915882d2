"""Access: who may read the fleet and who may act on it.

Two kinds of bearer tokens come from the config: read-only and admin (admin may also read).
Programs send `Authorization: Bearer <token>` on every request.

A browser cannot send a header from a link, so the page (`GET /`) and the connect flow
(`GET /connect/{id}`) also take the token once as `?token=`. The answer is a redirect
to the same address without the token (so it leaves the address bar and is not shared
with a copied link) that sets a session cookie holding a salted SHA-256 of the token,
never the token: `HttpOnly` (no
script reads it), `SameSite=Strict` (no other site can make the browser send it, so a
link elsewhere cannot start a connect flow behind an admin's back), `Secure` when the
public URL is https. The cookie is only honoured on safe methods (GET, HEAD): actions
(POST) need the bearer header, so they cannot be forged from a browser at all.

Comparisons are constant-time (`hmac.compare_digest`) over fixed-length digests, and every
configured token is compared, so timing reveals neither a token nor which one matched.

With no token configured at all, reading is open (the daemon listens on loopback by
default) and admin actions are refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from monitor.secret import Secret
from monitor.web.problems import ApiError

SESSION_COOKIE: Final = "snowmon_session"
SESSION_MAX_AGE: Final = 12 * 3600
TOKEN_PARAM: Final = "token"  # noqa: S105 (a query parameter name)
_SALT: Final = b"snowmon.web.session\x00"
_CHALLENGE: Final = 'Bearer realm="snowmon"'
_SAFE_METHODS: Final = frozenset({"GET", "HEAD"})


class Role(IntEnum):
    """What a request may do; also what a route needs (`NONE` = open to all)."""

    NONE = 0
    READ = 1
    ADMIN = 2


def session_digest(token: str) -> str:
    """The cookie value for a token: a salted SHA-256, hex."""
    return hashlib.sha256(_SALT + token.encode()).hexdigest()


class Gate:
    """Knows the configured tokens (as digests only) and answers what a credential may do."""

    def __init__(self, read_tokens: Sequence[Secret], admin_tokens: Sequence[Secret]) -> None:
        self._known: list[tuple[bytes, Role]] = [
            (bytes.fromhex(session_digest(t.reveal())), Role.READ) for t in read_tokens if t
        ] + [(bytes.fromhex(session_digest(t.reveal())), Role.ADMIN) for t in admin_tokens if t]
        self.anonymous_read = not self._known

    def _role_of(self, digest: bytes) -> Role:
        role = Role.NONE
        for known, granted in self._known:  # no early exit: same time whichever matches
            if hmac.compare_digest(known, digest) and granted > role:
                role = granted
        return role

    def role_of_token(self, token: str) -> Role:
        if not token:
            return Role.NONE
        return self._role_of(bytes.fromhex(session_digest(token)))

    def role_of_cookie(self, value: str) -> Role:
        if len(value) != 64:
            return Role.NONE
        try:
            digest = bytes.fromhex(value)
        except ValueError:
            return Role.NONE
        return self._role_of(digest)


def route_of(request: web.Request) -> str | None:
    """The matched route's template, e.g. `/api/v1/connections/{id}`; None if unmatched."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


Requirement = Callable[[web.Request], Role]


def auth_middleware(
    gate: Gate,
    requirement: Requirement,
    *,
    token_query_routes: frozenset[str],
    secure_cookies: bool,
) -> Middleware:
    """Find the caller's role, refuse with 401/403 when it is short of what the route needs,
    and turn a valid `?token=` on a browser route into a session cookie and a redirect."""

    def refuse(role: Role, invalid: bool = False) -> ApiError:
        if role is Role.NONE:
            challenge = f'{_CHALLENGE}, error="invalid_token"' if invalid else _CHALLENGE
            message = (
                "The token is not valid."
                if invalid
                else "This needs a token: send Authorization: Bearer <token>."
            )
            return ApiError(401, message, headers={"WWW-Authenticate": challenge})
        return ApiError(403, "This needs an admin token.")  # the only role above READ

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        need = requirement(request)
        if need is Role.NONE:
            return await handler(request)
        role = Role.NONE
        cookie_token: str | None = None
        header = request.headers.get("Authorization")
        query_token = request.query.get(TOKEN_PARAM)
        if header is not None:
            scheme, _, token = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise refuse(Role.NONE)
            role = gate.role_of_token(token.strip())
            if role is Role.NONE:
                raise refuse(Role.NONE, invalid=True)
        elif (
            query_token is not None
            and request.method in _SAFE_METHODS
            and route_of(request) in token_query_routes
        ):
            role = gate.role_of_token(query_token)
            if role is Role.NONE:
                raise refuse(Role.NONE, invalid=True)
            cookie_token = query_token
        elif request.method in _SAFE_METHODS and SESSION_COOKIE in request.cookies:
            role = gate.role_of_cookie(request.cookies[SESSION_COOKIE])
        if role is Role.NONE and gate.anonymous_read:
            role = Role.READ
        if role < need:
            raise refuse(role)
        if cookie_token is None:
            return await handler(request)
        # Signed in: keep the session, and send the browser on to the same address without
        # the token, so it leaves the address bar (and is not copied along with the URL).
        response = web.Response(
            status=303,
            headers={
                "Location": str(request.rel_url.without_query_params(TOKEN_PARAM)),
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
            },
        )
        response.set_cookie(
            SESSION_COOKIE,
            session_digest(cookie_token),
            max_age=SESSION_MAX_AGE,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=secure_cookies,
        )
        return response

    return middleware
