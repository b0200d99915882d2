"""The status API (`/api/v1/...`): the fleet's connections, their history, a summary, and
"probe now" / "refresh now".

Lists are ordered by connection id, so pagination stays stable while states change;
filters: `state` (repeatable or comma-separated, any of) and `label=key:value`
(repeatable, all of). Every answer is rendered by `render.py`; this module only reads
the query, asks the `FleetView`, and refuses bad input with a 4xx.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aiohttp import web

from monitor.model import ConnectionStatus, Grant, State
from monitor.web import render
from monitor.web.keys import CLOCK, FLEET
from monitor.web.problems import ApiError

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
DEFAULT_HISTORY: Final = 50
MAX_HISTORY: Final = 500
EXPIRY_WINDOW: Final = 7 * 86400  # "refresh token dies within 7 days", in seconds
MAX_EXPIRY_WINDOW: Final = 366 * 86400
_STATES: Final = {s.value: s for s in State}

Label = tuple[str, str]


def json_ok(body: render.Json) -> web.Response:
    response = web.json_response(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}")
    return value


def state_filter(request: web.Request) -> frozenset[State] | None:
    values = [v for raw in request.query.getall("state", []) for v in raw.split(",")]
    if not values:
        return None
    unknown = [v for v in values if v not in _STATES]
    if unknown:
        raise ApiError(400, f"unknown state {unknown[0]!r}; one of {', '.join(_STATES)}")
    return frozenset(_STATES[v] for v in values)


def label_filter(request: web.Request) -> list[Label]:
    labels: list[Label] = []
    for raw in request.query.getall("label", []):
        key, sep, value = raw.partition(":")
        if not sep or not key:
            raise ApiError(400, "label must look like key:value")
        labels.append((key, value))
    return labels


def select(
    statuses: Sequence[ConnectionStatus],
    states: frozenset[State] | None,
    labels: Sequence[Label],
) -> list[ConnectionStatus]:
    """The statuses that pass both filters, ordered by id."""
    chosen = [
        s
        for s in statuses
        if (states is None or s.health.state in states)
        and all(s.info.labels.get(k) == v for k, v in labels)
    ]
    chosen.sort(key=lambda s: s.info.id)
    return chosen


async def list_connections(request: web.Request) -> web.Response:
    states = state_filter(request)
    labels = label_filter(request)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = int_param(request, "offset", 0, 0, 100_000_000)
    chosen = select(request.app[FLEET].statuses(), states, labels)
    page = chosen[offset : offset + limit]
    end = offset + len(page)
    return json_ok(
        {
            "items": [render.connection_json(s) for s in page],
            "total": len(chosen),
            "limit": limit,
            "offset": offset,
            "next_offset": end if end < len(chosen) else None,
        }
    )


def known_status(request: web.Request) -> ConnectionStatus:
    connection_id = request.match_info["id"]
    status = request.app[FLEET].status(connection_id)
    if status is None:
        raise ApiError(404, f"no connection {connection_id!r}")
    return status


def held_status(request: web.Request) -> ConnectionStatus:
    """`known_status` of a connection this process works on: actions (probe, refresh,
    the connect flow) run on the replica that holds the connection's lease."""
    status = known_status(request)
    if not request.app[FLEET].holds(status.info.id):
        raise ApiError(
            409,
            f"connection {status.info.id!r} is kept by {render.holder_words(status)} right "
            "now; ask that replica (leases move, so retrying later may land here)",
        )
    return status


async def get_connection(request: web.Request) -> web.Response:
    limit = int_param(request, "history", DEFAULT_HISTORY, 0, MAX_HISTORY)
    status = known_status(request)
    entries = await request.app[FLEET].history(status.info.id, limit) if limit else []
    body = render.connection_json(status)
    body["history"] = [render.history_json(e) for e in entries[:limit]]
    return json_ok(body)


async def get_summary(request: web.Request) -> web.Response:
    within = int_param(request, "expiring_within", EXPIRY_WINDOW, 0, MAX_EXPIRY_WINDOW)
    now = request.app[CLOCK].now()
    return json_ok(render.summary_json(request.app[FLEET].statuses(), now, within))


async def probe_now(request: web.Request) -> web.Response:
    status = held_status(request)
    fleet = request.app[FLEET]
    try:
        result = await fleet.probe_now(status.info.id)
    except KeyError:
        raise ApiError(404, f"no connection {status.info.id!r}") from None
    return json_ok(_acted(request, status.info.id, render.probe_json(result)))


async def refresh_now(request: web.Request) -> web.Response:
    status = held_status(request)
    now = request.app[CLOCK].now()
    if status.info.grant is Grant.AUTHORIZATION_CODE and (
        status.refresh_expires_at is None or status.refresh_expires_at <= now
    ):
        raise ApiError(
            409,
            f"connection {status.info.id!r} has no live refresh token: "
            f"re-authorize it at /connect/{status.info.id}",
        )
    fleet = request.app[FLEET]
    try:
        result = await fleet.refresh_now(status.info.id)
    except KeyError:
        raise ApiError(404, f"no connection {status.info.id!r}") from None
    return json_ok(_acted(request, status.info.id, render.token_json(result)))


def _acted(request: web.Request, connection_id: str, result: render.Json) -> render.Json:
    after = request.app[FLEET].status(connection_id)
    return {
        "id": connection_id,
        "result": result,
        "connection": render.connection_json(after) if after is not None else None,
    }


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/connections", list_connections)
    app.router.add_get("/api/v1/connections/{id}", get_connection)
    app.router.add_get("/api/v1/summary", get_summary)
    app.router.add_post("/api/v1/connections/{id}/probe", probe_now)
    app.router.add_post("/api/v1/connections/{id}/refresh", refresh_now)
