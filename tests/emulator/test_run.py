"""Running a fleet as a process and writing the daemon config that matches it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import stat
import sys
import tomllib
from pathlib import Path

import aiohttp

from monitor.emulator import (
    Emulator,
    FleetOptions,
    ServeOptions,
    serve,
    write_daemon_config,
)
from tests.emulator.calls import PROBE, get_table, post_token

ROOT = Path(__file__).resolve().parents[2]


def resolve(reference: str, config: Path) -> str:
    assert reference.startswith("file:")
    return (config.parent / reference[5:]).read_text().rstrip("\n")


async def test_config_has_one_connection_per_instance_with_file_secrets(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with Emulator(FleetOptions(instances=2)) as emulator:
        path = tmp_path / "snowmon.toml"
        write_daemon_config(emulator.fleet_info(), path)
        config = tomllib.loads(path.read_text())
        assert "clock" not in config  # wall time
        assert config["daemon"]["store"] == "sqlite:///snowmon.db"
        [key] = config["daemon"]["encryption_keys"]
        assert len(base64.urlsafe_b64decode(resolve(key, path))) == 32
        assert config["defaults"]["access_token_lifespan"] == 1800.0
        connections = config["connections"]
        assert [c["id"] for c in connections] == ["dev100001", "dev100002"]
        for connection, instance in zip(connections, emulator.instances, strict=True):
            assert connection["instance_url"] == instance.base_url
            assert connection["grant"] == "password"
            assert connection["client_id"] == instance.client_id
            assert resolve(connection["client_secret"], path) == instance.client_secret
            assert resolve(connection["password"], path) == instance.password
            secret_file = path.parent / connection["password"][5:]
            assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        form = {
            "grant_type": "password",
            "client_id": connections[0]["client_id"],
            "client_secret": resolve(connections[0]["client_secret"], path),
            "username": connections[0]["username"],
            "password": resolve(connections[0]["password"], path),
        }
        status, body = await post_token(session, emulator.instances[0], form)
        assert status == 200
        assert (await get_table(session, emulator.instances[0], PROBE, body["access_token"]))[
            0
        ] == 200


async def test_config_carries_speed_and_anchor_and_inline_secrets(tmp_path: Path) -> None:
    async with Emulator(FleetOptions(instances=1, speed=10.0, anchor=1_700_000_000.0)) as emulator:
        path = tmp_path / "fast.toml"
        write_daemon_config(emulator.fleet_info(), path, secrets="inline", labels={"env": "emu"})
        config = tomllib.loads(path.read_text())
    assert config["clock"] == {"speed": 10.0, "anchor": 1_700_000_000.0}
    [connection] = config["connections"]
    assert connection["client_secret"] == emulator.instances[0].client_secret
    assert connection["labels"] == {"env": "emu"}
    assert not (tmp_path / "fast.secrets").exists()


async def test_config_without_daemon_section(tmp_path: Path) -> None:
    async with Emulator(FleetOptions(instances=1)) as emulator:
        path = tmp_path / "part.toml"
        write_daemon_config(emulator.fleet_info(), path, daemon_section=False)
    assert "daemon" not in tomllib.loads(path.read_text())


async def test_serve_announces_writes_config_and_stops(tmp_path: Path) -> None:
    announced: list[dict[str, object]] = []
    ready, stop = asyncio.Event(), asyncio.Event()

    def announce(event: dict[str, object]) -> None:
        announced.append(event)
        ready.set()

    options = ServeOptions(
        FleetOptions(instances=2), config_out=tmp_path / "c.toml", announce=announce
    )
    async with asyncio.timeout(10), asyncio.TaskGroup() as group:
        task = group.create_task(serve(options, stop))
        await ready.wait()
        assert announced[0]["event"] == "emulator_ready"
        assert announced[0]["instances"] == 2
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"{announced[0]['admin_url']}/admin/clock") as response,
        ):
            assert response.status == 200
        stop.set()
    assert task.done()
    assert len(tomllib.loads((tmp_path / "c.toml").read_text())["connections"]) == 2


async def test_python_dash_m_runs_until_sigterm(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.emulator", "--instances", "3", "--speed", "5",
        "--config-out", str(tmp_path / "c.toml"),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            ready = json.loads(await process.stdout.readline())
        assert ready["instances"] == 3
        assert ready["clock"]["speed"] == 5.0
        assert tomllib.loads((tmp_path / "c.toml").read_text())["clock"]["speed"] == 5.0
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
