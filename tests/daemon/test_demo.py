"""`snowmon demo`, the README's first command: an emulated fleet with faults, the daemon
watching it, its status API, page and metrics, all up within seconds."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import aiohttp

from tests.daemon.configs import free_port

# Connections whose instance the demo gives a fault, and the state each must reach.
WANT = {"hibernating", "rate_limited", "forbidden"}
CONNECT = "acme-connect-demo"  # an authorization_code connection nobody has connected yet


async def _read_announcement(stream: asyncio.StreamReader) -> tuple[str, str]:
    """The status page URL and admin token the demo prints on stderr."""
    async with asyncio.timeout(30):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError("the demo ended before it announced itself")
            found = re.search(r"status page\s+(http://\S+)/\?token=(\S+)", line)
            if found:
                return found.group(1), found.group(2)


async def test_demo_serves_a_fleet_with_its_stories(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor.cli",
        "demo",
        "--dir",
        str(tmp_path / "demo"),
        "--port",
        str(port),
        "--duration",
        "60",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        url, token = await _read_announcement(proc.stderr)
        assert url == f"http://127.0.0.1:{port}"
        drain = asyncio.create_task(proc.stderr.read())  # keep the pipe from filling up
        auth = {"Authorization": f"Bearer {token}"}
        # unsafe=True: keep cookies of an IP address host, as browsers do (the page's
        # `?token=` becomes a session cookie and a redirect).
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as client, asyncio.timeout(40):
            items: dict[str, dict[str, object]] = {}
            while True:
                async with client.get(f"{url}/api/v1/connections", headers=auth) as resp:
                    assert resp.status == 200
                    body = await resp.json()
                items = {item["id"]: item for item in body["items"]}
                seen = {item["state"] for item in items.values()}
                if seen >= WANT and "healthy" in seen and items[CONNECT]["state"] != "pending":
                    break
                await asyncio.sleep(0.5)
            # Probed once (within initial_spread), it waits for a person: the connect flow.
            waiting = items[CONNECT]
            assert (waiting["state"], waiting["last_reason"]) == (
                "credentials_expired",
                "not_authorized",
            )
            async with client.get(f"{url}/?token={token}") as resp:
                assert resp.status == 200
                assert CONNECT in await resp.text()
            async with client.get(f"{url}/metrics") as resp:
                assert resp.status == 200
                assert "snowmon_connections" in await resp.text()
    finally:
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        if drain is not None:
            await drain
