"""`snowmon run` as a real process: SIGTERM drains and exits 0, `kill -9` in the middle of
a refresh storm loses no token, bad config and bad stores exit non-zero with a message and
no traceback."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from monitor.cli import EXIT_INTERRUPTED
from monitor.emulator import Emulator, FleetOptions
from monitor.event_loop import resolve
from monitor.store.crypto import Keyring, generate_key
from monitor.store.sqlite import SqliteStore
from tests.daemon.configs import READ_TOKEN, write_config

SNOWMON = [sys.executable, "-m", "monitor.cli"]


async def _start(config: Path) -> asyncio.subprocess.Process:
    """Start the daemon with its output in a file beside the config (a pipe nobody reads
    would fill up and stall it)."""
    log = (config.parent / "daemon.log").open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            *SNOWMON, "run", "--config", str(config), stdout=log, stderr=log
        )
    finally:
        log.close()


@asynccontextmanager
async def _daemon(config: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`snowmon run` for the block; killed on the way out if it is still running."""
    proc = await _start(config)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _log(config: Path) -> str:
    return (config.parent / "daemon.log").read_text(errors="replace")


def _events(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


async def _states(base: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{base}/api/v1/connections?limit=1000", headers=headers) as resp,
    ):
        body = await resp.json()
    return {item["id"]: item["state"] for item in body["items"]}


async def _wait_all(base: str, state: str, count: int, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while True:
            try:
                states = await _states(base)
            except aiohttp.ClientError:
                states = {}
            if len(states) == count and set(states.values()) == {state}:
                return
            await asyncio.sleep(0.1)


async def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    async with Emulator(FleetOptions(instances=10, speed=10.0, seed=31)) as emu:
        config, port = write_config(emu.fleet_info(), tmp_path)
        async with _daemon(config) as proc:
            await _wait_all(f"http://127.0.0.1:{port}", "healthy", 10, 30)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        log = _log(config)
        assert proc.returncode == 0, log[-2000:]
        assert time.monotonic() - started < 20
        assert "Traceback" not in log
        assert '"event":"daemon.stopped"' in log
        # `[daemon] event_loop = "auto"`: uvloop where it imports (a dependency on Linux)
        start_line = next(e for e in _events(log) if e["event"] == "daemon.started")
        assert start_line["event_loop"] == resolve("auto")


async def test_a_second_signal_exits_at_once_while_a_refresh_drains(tmp_path: Path) -> None:
    # 60-second access tokens at speed 10: a refresh is due ~4 s after each grant; the
    # token endpoint then takes 30 s, so the first SIGTERM waits for it (shutdown_grace).
    options = FleetOptions(instances=3, speed=10.0, seed=32, access_lifespan=60)
    async with Emulator(options) as emu:
        config, port = write_config(emu.fleet_info(), tmp_path)
        async with _daemon(config) as proc:
            await _wait_all(f"http://127.0.0.1:{port}", "healthy", 3, 30)
            for inst in emu.instances:
                emu.set_faults(inst.name, latency=30.0, latency_on=["token"])
            await asyncio.sleep(6)  # every connection's refresh has started by now
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(1)
            assert proc.returncode is None  # draining: the refreshes are still in flight
            second = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)
            took = time.monotonic() - second
        log = _log(config)
        assert proc.returncode == EXIT_INTERRUPTED, log[-2000:]
        assert took < 3
        assert '"event":"daemon.killed"' in log
        assert "Traceback" not in log


async def test_config_warnings_are_capped_at_50_log_lines(tmp_path: Path) -> None:
    # 30 instances with inline secrets: the key and two secrets each, 61 warnings.
    async with Emulator(FleetOptions(instances=30, speed=10.0, seed=33)) as emu:
        config, port = write_config(emu.fleet_info(), tmp_path, secrets="inline")
        text = config.read_text()
        assert "\n[daemon]\n" in text
        config.write_text(text.replace("\n[daemon]\n", '\n[daemon]\nevent_loop = "asyncio"\n', 1))
        async with _daemon(config) as proc:
            await _wait_all(f"http://127.0.0.1:{port}", "healthy", 30, 30)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    log = _log(config)
    assert proc.returncode == 0, log[-2000:]
    events = _events(log)
    # the configured loop, not the default
    assert next(e for e in events if e["event"] == "daemon.started")["event_loop"] == "asyncio"
    shown = [e for e in events if e["event"] == "config.warning"]
    suppressed = [e for e in events if e["event"] == "config.warnings_suppressed"]
    assert len(shown) == 50
    assert all(e["detail"].endswith("inline secret; use env: or file:") for e in shown)
    assert len(suppressed) == 1
    assert suppressed[0]["detail"] == "... and 11 more warnings (11 inline secrets)"
    assert suppressed[0]["count"] == 11
    assert suppressed[0]["level"] == "warning"
    for inst in emu.instances:
        assert inst.password not in log
        assert inst.client_secret not in log


async def test_kill_9_in_a_refresh_storm_loses_no_token(tmp_path: Path) -> None:
    # 30-second tokens at 60x: every connection refreshes about three times a second.
    options = FleetOptions(instances=40, speed=60.0, access_lifespan=30, seed=32)
    async with Emulator(options) as emu:
        config, port = write_config(emu.fleet_info(), tmp_path, probe_interval=20)
        base = f"http://127.0.0.1:{port}"
        async with _daemon(config) as proc:
            await _wait_all(base, "healthy", 40, 30)
            refreshes = emu.totals().refreshes
            await asyncio.sleep(1.0)
            assert emu.totals().refreshes > refreshes  # the storm is on
            proc.kill()  # SIGKILL: no drain, no flush
            await proc.wait()
        grants = emu.totals().grants["password"]
        assert grants == 40
        # Every stored token decrypts; the restarted daemon refreshes with them and
        # never needs a new password grant.
        proc = await _start(config)
        try:
            await _wait_all(base, "healthy", 40, 30)
            await asyncio.sleep(1.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        assert emu.totals().grants["password"] == 40
        assert emu.totals().expired_token_uses == 0
        assert emu.totals().refresh_overlaps == 0
    key = (config.with_name("snowmon.secrets") / "encryption.key").read_text().strip()
    store = SqliteStore(tmp_path / "snowmon.db", Keyring([key]))
    await store.open()
    try:
        assert len(await store.load_all_tokens()) == 40
    finally:
        await store.close()


async def _run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *SNOWMON,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_bad_config_exits_2_with_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        """
[daemon]
store = "sqlite:///x.db"
encryption_keys = ["env:SNOWMON_TEST_MISSING_KEY"]
bogus = 1

[[connections]]
id = "Bad Id"
instance_url = "http://evil.example.com"
grant = "password"
client_id = "x"
client_secret = "env:SNOWMON_TEST_MISSING_SECRET"
"""
    )
    for command in (["check", str(config)], ["run", "--config", str(config)]):
        code, _, err = await _run_cli(*command)
        assert code == 2, err
        assert "Traceback" not in err
        assert "bogus" in err
        assert "SNOWMON_TEST_MISSING_KEY" in err
        assert "instance_url" in err
        assert "SNOWMON_TEST_MISSING_SECRET" in err


async def test_unusable_store_exits_1_with_a_message(tmp_path: Path) -> None:
    async with Emulator(FleetOptions(instances=1, seed=33)) as emu:
        config, _ = write_config(emu.fleet_info(), tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    text = config.read_text().replace(
        'store = "sqlite:///snowmon.db"', 'store = "sqlite:///not-a-dir/s.db"'
    )
    config.write_text(text)
    code, _, err = await _run_cli("run", "--config", str(config))
    assert code == 1, err
    assert "Traceback" not in err
    assert "not-a-dir" in err


async def test_wrong_encryption_key_exits_1_naming_the_key(tmp_path: Path) -> None:
    async with Emulator(FleetOptions(instances=2, speed=10.0, seed=34)) as emu:
        config, port = write_config(emu.fleet_info(), tmp_path)
        proc = await _start(config)
        try:
            await _wait_all(f"http://127.0.0.1:{port}", "healthy", 2, 30)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    key_file = config.with_name("snowmon.secrets") / "encryption.key"
    key_file.write_text(generate_key())
    code, _, err = await _run_cli("run", "--config", str(config))
    assert code == 1, err
    assert "Traceback" not in err
    assert "encryption_keys" in err
