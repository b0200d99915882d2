"""The whole daemon in-process against the emulator, seen through its HTTP API: a revoked
authorization-code connection shows credentials_expired in the API and the page, the
connect flow (emulator auto-approve) brings it back, with no restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.emulator import Emulator, FleetOptions
from tests.daemon.configs import ADMIN_TOKEN, READ_TOKEN, write_config

AUTH = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Emulator, str]]:
    async with Emulator(FleetOptions(instances=3, speed=20.0, seed=21)) as emu:
        path, port = write_config(emu.fleet_info(), tmp_path, connect_ids=1, probe_interval=30)
        daemon = Daemon(load_config(path).config)
        async with asyncio.TaskGroup() as group:
            task = group.create_task(daemon.run())
            await asyncio.wait_for(daemon.started.wait(), 10)
            try:
                yield emu, f"http://127.0.0.1:{port}"
            finally:
                daemon.stop.set()
        assert task.done()


async def _connection(client: aiohttp.ClientSession, base: str, cid: str) -> dict[str, object]:
    async with client.get(f"{base}/api/v1/connections/{cid}", headers=AUTH) as resp:
        assert resp.status == 200
        body: dict[str, object] = await resp.json()
        return body


async def _wait_state(
    client: aiohttp.ClientSession, base: str, cid: str, state: str, seconds: float
) -> dict[str, object]:
    async with asyncio.timeout(seconds):
        while True:
            body = await _connection(client, base, cid)
            if body["state"] == state:
                return body
            await asyncio.sleep(0.05)


async def test_revoke_shows_expired_then_connect_flow_recovers(
    running: tuple[Emulator, str],
) -> None:
    emu, base = running
    first = emu.instances[0]
    cid = f"{first.name}-connect"
    async with aiohttp.ClientSession() as client:
        # Never authorized: it needs a person.
        await _wait_state(client, base, cid, "credentials_expired", 10)
        await _walk_connect_flow(client, base, cid)
        await _wait_state(client, base, cid, "healthy", 10)

        # Revoke its tokens on the instance: exactly this connection goes bad.
        emu.revoke(first.name, first.client_id)
        body = await _wait_state(client, base, cid, "credentials_expired", 15)
        assert body["last_reason"] in ("rejected", "probe_refused")
        async with client.get(f"{base}/", headers=AUTH) as resp:
            page = await resp.text()
        assert cid in page
        assert f"/connect/{cid}" in page
        # The password connection on the same instance re-grants by itself.
        await _wait_state(client, base, first.name, "healthy", 15)

        await _walk_connect_flow(client, base, cid)
        await _wait_state(client, base, cid, "healthy", 10)


async def _walk_connect_flow(client: aiohttp.ClientSession, base: str, cid: str) -> None:
    async with client.get(f"{base}/connect/{cid}", headers=ADMIN, allow_redirects=False) as r:
        assert r.status in (302, 303), await r.text()
        authorize = r.headers["Location"]
    assert "/oauth_auth.do?" in authorize
    assert "code_challenge_method=S256" in authorize
    async with client.get(authorize, allow_redirects=False) as r:
        assert r.status == 302
        callback = r.headers["Location"]
    assert callback.startswith(f"{base}/oauth/callback?")
    async with client.get(callback) as r:
        text = await r.text()
        assert r.status == 200, text
    assert "authorized again" in text
