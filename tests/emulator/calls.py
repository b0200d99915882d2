"""Plain HTTP calls a client makes to an emulated instance, shared by the emulator tests."""

from __future__ import annotations

import base64
import re
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from monitor.emulator import Instance

TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{86}$")
GENERIC_DENIED = {"error_description": "access_denied", "error": "server_error"}
PROBE = (
    "/api/now/table/sys_user?sysparm_limit=1&sysparm_fields=sys_id"
    "&sysparm_no_count=true&sysparm_suppress_pagination_header=true"
)


def password_form(instance: Instance, **overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "password",
        "client_id": instance.client_id,
        "client_secret": instance.client_secret,
        "username": instance.username,
        "password": instance.password,
    }
    form.update(overrides)
    return form


def refresh_form(instance: Instance, refresh_token: str, **overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "refresh_token",
        "client_id": instance.client_id,
        "client_secret": instance.client_secret,
        "refresh_token": refresh_token,
    }
    form.update(overrides)
    return form


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


async def post_token(
    session: aiohttp.ClientSession,
    instance: Instance,
    form: dict[str, str],
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with session.post(
        instance.base_url + "/oauth_token.do", data=form, headers=headers
    ) as response:
        return response.status, await response.json(content_type=None)


async def tokens(session: aiohttp.ClientSession, instance: Instance) -> dict[str, Any]:
    status, body = await post_token(session, instance, password_form(instance))
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def get_table(
    session: aiohttp.ClientSession, instance: Instance, path: str, token: str
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    async with session.get(instance.base_url + path, headers=bearer(token)) as response:
        return response.status, await response.json(content_type=None), response.headers
