"""The OpenAPI 3.1 document of the web app, served at `/api/v1/openapi.json`.

Built from the same constants the handlers use (limits, states, cookie and parameter
names), and for the running settings (is `/metrics` protected? is reading open?), so it
says what this server does. The test suite fuzzes the server against it (schemathesis)
and checks that its paths are exactly the app's routes.
"""

from __future__ import annotations

from typing import Any, Final

from monitor.web import api
from monitor.web.auth import SESSION_COOKIE, TOKEN_PARAM
from monitor.web.openapi_schemas import STATE, Json, ref, schemas
from monitor.web.pending import STATE_TTL

CONNECTION_ID_PATTERN: Final = "^[a-z0-9][a-z0-9._-]{0,62}$"


def _json(schema: str, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def _error(description: str, *, html: bool = False) -> Json:
    content: Json = {"application/json": {"schema": ref("Error")}}
    if html:
        content["text/html"] = {"schema": {"type": "string"}}
    return {"description": description, "content": content}


def _errors(*codes: int, html: bool = False) -> Json:
    words = {
        400: "bad input",
        401: "no token, or a token that is not valid",
        403: "the token may not do this (admin needed); on the callback: an unknown, "
        "used or expired state",
        404: "no such connection",
        409: "not possible for this connection",
        502: "ServiceNow did not accept the exchange",
    }
    return {str(c): _error(words[c], html=html) for c in codes}


_ID: Final[Json] = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": CONNECTION_ID_PATTERN},
    "example": "acme-prod",
}


def _query(name: str, schema: Json, description: str, **extra: Any) -> Json:
    return {"name": name, "in": "query", "schema": schema, "description": description, **extra}


def build_openapi(*, protect_metrics: bool, anonymous_read: bool) -> Json:
    """The document for a server with these settings."""
    read: list[Json] = [{"bearer": []}, {"session": []}]
    if anonymous_read:
        read.append({})
    admin: list[Json] = [{"bearer": []}]
    browser_admin: list[Json] = [{"bearer": []}, {"session": []}, {"token_query": []}]
    html = {"text/html": {"schema": {"type": "string"}}}
    list_params = [
        _query(
            "state",
            {"type": "array", "items": STATE},
            "any of these states (repeat the parameter, or separate with commas)",
            style="form",
            explode=True,
        ),
        _query(
            "label",
            {"type": "array", "items": {"type": "string", "pattern": "^[^:]+:"}},
            "key:value; repeat for all of several labels",
            style="form",
            explode=True,
        ),
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": api.MAX_LIMIT},
            f"page size, default {api.DEFAULT_LIMIT}",
        ),
        _query("offset", {"type": "integer", "minimum": 0, "maximum": 100_000_000}, "skip"),
    ]
    paths: Json = {
        "/healthz": {
            "get": {
                "summary": "The process is alive",
                "security": [],
                "responses": {"200": _json("Alive", "alive")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Store reachable, scheduler running, config loaded",
                "security": [],
                "responses": {
                    "200": _json("Ready", "ready"),
                    "503": _json("Ready", "not ready: `checks` says what is missing"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (OpenMetrics when asked for by Accept)",
                "security": read if protect_metrics else [],
                "responses": {
                    "200": {
                        "description": "metrics",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    },
                    **(_errors(401) if protect_metrics else {}),
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/api/v1/connections": {
            "get": {
                "summary": "Connections, ordered by id, filtered and paginated",
                "security": read,
                "parameters": list_params,
                "responses": {"200": _json("ConnectionList", "a page"), **_errors(400, 401)},
            }
        },
        "/api/v1/connections/{id}": {
            "get": {
                "summary": "One connection with its recent history (newest first)",
                "security": read,
                "parameters": [
                    _ID,
                    _query(
                        "history",
                        {"type": "integer", "minimum": 0, "maximum": api.MAX_HISTORY},
                        f"how many history entries, default {api.DEFAULT_HISTORY}",
                    ),
                ],
                "responses": {
                    "200": _json("ConnectionDetail", "the connection"),
                    **_errors(400, 401, 404),
                },
            }
        },
        "/api/v1/summary": {
            "get": {
                "summary": "Counts by state and label; refresh tokens that die soon",
                "security": read,
                "parameters": [
                    _query(
                        "expiring_within",
                        {"type": "integer", "minimum": 0, "maximum": api.MAX_EXPIRY_WINDOW},
                        f"seconds, default {api.EXPIRY_WINDOW} (7 days)",
                    )
                ],
                "responses": {"200": _json("Summary", "the summary"), **_errors(400, 401)},
            }
        },
        "/api/v1/connections/{id}/probe": {
            "post": {
                "summary": "Probe now; the answer is the probe's result",
                "security": admin,
                "parameters": [_ID],
                "responses": {
                    "200": _json("ProbeAnswer", "probed (the result says how it went)"),
                    **_errors(401, 403, 404),
                },
            }
        },
        "/api/v1/connections/{id}/refresh": {
            "post": {
                "summary": "Refresh the access token now (or grant anew)",
                "security": admin,
                "parameters": [_ID],
                "responses": {
                    "200": _json("RefreshAnswer", "asked (the result says how it went)"),
                    **_errors(401, 403, 404, 409),
                },
            }
        },
        "/": {
            "get": {
                "summary": "The status page (HTML)",
                "security": [*read, {"token_query": []}],
                "parameters": [
                    _query("label", {"type": "string", "pattern": "^$|^[^:]+:"}, "key:value")
                ],
                "responses": {
                    "200": {"description": "the page", "content": html},
                    "303": {"description": "signed in by ?token=: the same page without it"},
                    **_errors(400, 401, html=True),
                },
            }
        },
        "/connect/{id}": {
            "get": {
                "summary": "Start re-authorizing a connection (authorization code + PKCE)",
                "security": browser_admin,
                "parameters": [_ID],
                "responses": {
                    "302": {
                        "description": "to the instance's /oauth_auth.do",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "303": {"description": "signed in by ?token=: the same address without it"},
                    **_errors(401, 403, 404, 409, html=True),
                },
            }
        },
        "/oauth/callback": {
            "get": {
                "summary": "ServiceNow sends the browser back here",
                "description": f"The state is single use and expires after {STATE_TTL:.0f} s.",
                "security": [],
                "parameters": [
                    _query(
                        "state", {"type": "string", "minLength": 1}, "from /connect", required=True
                    ),
                    _query("code", {"type": "string"}, "the authorization code"),
                    _query("error", {"type": "string"}, "set when the user declined"),
                ],
                "responses": {
                    "200": {"description": "authorized again", "content": html},
                    **_errors(400, 403, 404, 409, 502, html=True),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "snowmon",
            "version": "1",
            "description": "Status API, status page and connect flow of snowmon. "
            "Bearer tokens: read-only or admin (POST and /connect need admin).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
                "token_query": {"type": "apiKey", "in": "query", "name": TOKEN_PARAM},
            },
        },
    }
