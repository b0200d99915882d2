"""The admin API: JSON over HTTP on 127.0.0.1 to steer and observe a running fleet.

    GET    /admin/fleet?offset=0&limit=1000   instances with credentials, clock, options
    GET    /admin/clock                       {"now", "speed", "anchor", "offset"}
    POST   /admin/clock                       {"advance": seconds} or {"set": unix_time}
    GET    /admin/instances/{name}            one instance with its OAuth applications
    GET    /admin/instances/{name}/faults     current faults
    PATCH  /admin/instances/{name}/faults     merge fields, e.g. {"hibernate": true}
    PUT    /admin/instances/{name}/faults     replace all faults
    DELETE /admin/instances/{name}/faults     clear all faults
    POST   /admin/faults                      {"instances": "all"|[names], "share": 0.1,
                                               "faults": {...}}: patch many at once
    DELETE /admin/faults                      clear the faults of every instance
    PATCH  /admin/instances/{name}/clients/{client_id}          e.g. {"password": false}
    POST   /admin/instances/{name}/clients/{client_id}/revoke   revoke all its tokens
    POST   /admin/instances/{name}/clients/{client_id}/rotate-secret  -> {"client_secret"}
    GET    /admin/instances/{name}/stats      counts of one instance
    GET    /admin/stats                       {"totals", "instances": {name: counts}} (active)
    POST   /admin/stats/reset                 forget all counts

Errors are `{"error": "..."}` with 400 (bad input) or 404 (unknown instance or client).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from monitor.emulator.faults import ClientSettings, Faults
from monitor.emulator.scenario import Selection, patch_faults
from monitor.emulator.state import FleetState, UnknownClientError, UnknownInstanceError

STATE = web.AppKey("state", FleetState)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ClockChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advance: float | None = None
    set: float | None = None


class BulkFaults(Selection):
    faults: dict[str, Any]


def _json(payload: object, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except UnknownInstanceError as exc:
        return _json({"error": f"unknown instance {exc.args[0]}"}, 404)
    except UnknownClientError as exc:
        return _json({"error": f"unknown client {exc.args[0]}"}, 404)
    except ValidationError as exc:
        return _json({"error": "invalid request", "details": json.loads(exc.json())}, 400)
    except json.JSONDecodeError as exc:
        return _json({"error": f"body is not JSON: {exc}"}, 400)


async def _body(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    return json.loads(await request.read())


def _state(request: web.Request) -> FleetState:
    return request.app[STATE]


async def fleet(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", str(len(state.instances))))
    except ValueError:
        return _json({"error": "offset and limit must be integers"}, 400)
    chosen = state.instances[max(0, offset) : max(0, offset) + max(0, limit)]
    return _json(
        {
            "total": len(state.instances),
            "clock": state.clock.snapshot(),
            "options": state.options.model_dump(),
            "instances": [instance.describe() for instance in chosen],
        }
    )


async def get_clock(request: web.Request) -> web.Response:
    return _json(_state(request).clock.snapshot())


async def change_clock(request: web.Request) -> web.Response:
    change = ClockChange.model_validate(await _body(request))
    clock = _state(request).clock
    if change.set is not None:
        clock.set(change.set)
    if change.advance is not None:
        clock.advance(change.advance)
    return _json(clock.snapshot())


async def instance(request: web.Request) -> web.Response:
    return _json(_state(request).instance(request.match_info["name"]).describe())


def _faults_json(faults: Faults | None) -> dict[str, Any]:
    return (faults or Faults()).model_dump()


async def get_faults(request: web.Request) -> web.Response:
    return _json(_faults_json(_state(request).instance(request.match_info["name"]).faults))


async def patch_instance_faults(request: web.Request) -> web.Response:
    target = _state(request).instance(request.match_info["name"])
    patch = await _body(request)
    Faults.model_validate(patch)
    return _json(_faults_json(patch_faults(target, patch)))


async def put_faults(request: web.Request) -> web.Response:
    target = _state(request).instance(request.match_info["name"])
    faults = Faults.model_validate(await _body(request))
    target.faults = None if faults.is_clear() else faults
    return _json(_faults_json(target.faults))


async def delete_faults(request: web.Request) -> web.Response:
    _state(request).clear_faults(request.match_info["name"])
    return _json(_faults_json(None))


async def bulk_faults(request: web.Request) -> web.Response:
    bulk = BulkFaults.model_validate(await _body(request))
    Faults.model_validate(bulk.faults)
    chosen = bulk.pick(_state(request))
    for target in chosen:
        patch_faults(target, bulk.faults)
    return _json({"instances": [target.name for target in chosen]})


async def clear_all_faults(request: web.Request) -> web.Response:
    for target in _state(request).instances:
        target.faults = None
    return _json({"cleared": True})


async def configure_client(request: web.Request) -> web.Response:
    settings = ClientSettings.model_validate(await _body(request))
    client = _state(request).configure_client(
        request.match_info["name"], settings, request.match_info["client_id"]
    )
    return _json(client.describe())


async def revoke(request: web.Request) -> web.Response:
    state = _state(request)
    state.revoke(request.match_info["name"], request.match_info["client_id"])
    return _json({"revoked": True})


async def rotate_secret(request: web.Request) -> web.Response:
    secret = _state(request).rotate_secret(
        request.match_info["name"], request.match_info["client_id"]
    )
    return _json({"client_secret": secret})


async def instance_stats(request: web.Request) -> web.Response:
    return _json(_state(request).stats(request.match_info["name"]).to_json())


async def fleet_stats(request: web.Request) -> web.Response:
    state = _state(request)
    return _json(
        {
            "totals": state.totals().to_json(),
            "instances": {
                target.name: target.stats.to_json()
                for target in state.instances
                if target.stats is not None
            },
            "tokens": state.tokens.counts(),
        }
    )


async def reset_stats(request: web.Request) -> web.Response:
    _state(request).reset_stats()
    return _json({"reset": True})


def admin_app(state: FleetState) -> web.Application:
    app = web.Application(middlewares=[_errors])
    app[STATE] = state
    prefix = "/admin/instances/{name}"
    app.router.add_get("/admin/fleet", fleet)
    app.router.add_get("/admin/clock", get_clock)
    app.router.add_post("/admin/clock", change_clock)
    app.router.add_get(prefix, instance)
    app.router.add_get(prefix + "/faults", get_faults)
    app.router.add_patch(prefix + "/faults", patch_instance_faults)
    app.router.add_put(prefix + "/faults", put_faults)
    app.router.add_delete(prefix + "/faults", delete_faults)
    app.router.add_post("/admin/faults", bulk_faults)
    app.router.add_delete("/admin/faults", clear_all_faults)
    app.router.add_patch(prefix + "/clients/{client_id}", configure_client)
    app.router.add_post(prefix + "/clients/{client_id}/revoke", revoke)
    app.router.add_post(prefix + "/clients/{client_id}/rotate-secret", rotate_secret)
    app.router.add_get(prefix + "/stats", instance_stats)
    app.router.add_get("/admin/stats", fleet_stats)
    app.router.add_post("/admin/stats/reset", reset_stats)
    return app
